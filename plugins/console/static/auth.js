// Sign up, log in, and the caller's own profile.
import { login, register, currentUser } from './api.js';
import { h, mount, form, field, say } from './ui.js';
import { go } from './app.js';

function next() {
  const n = new URLSearchParams(location.search).get('next');
  return n && n.startsWith('/app/') ? n : '/app/projects';
}

export function loginView() {
  mount('Log in',
    form([
      field('Username or email', 'name', { autocomplete: 'username', required: true }),
      field('Password', 'password', { type: 'password', autocomplete: 'current-password', required: true }),
    ], 'Log in', async (d) => {
      await login(d.name, d.password);
      say('Logged in');
      go(next(), true);
    }, { 'aria-label': 'Log in' }),
    h('p', {}, 'No account yet? ', h('a', { href: '/app/signup' }, 'Sign up')));
}

export function signupView() {
  mount('Sign up',
    form([
      field('Username', 'username', { autocomplete: 'username', required: true }),
      field('Email', 'email', { type: 'email', autocomplete: 'email', required: true }),
      field('Password (8 to 64 characters)', 'password', { type: 'password', autocomplete: 'new-password', required: true }),
      field('First name (optional)', 'firstName', { autocomplete: 'given-name' }),
      field('Last name (optional)', 'lastName', { autocomplete: 'family-name' }),
    ], 'Create account', async (d) => {
      const body = { username: d.username, email: d.email, password: d.password };
      if (d.firstName) body.firstName = d.firstName;
      if (d.lastName) body.lastName = d.lastName;
      await register(body);
      say('Account created');
      go('/app/projects', true);
    }, { 'aria-label': 'Sign up' }),
    h('p', {}, 'Have an account? ', h('a', { href: '/app/login' }, 'Log in')));
}

export function meView() {
  const u = currentUser();
  mount('Your profile',
    h('dl', {},
      h('dt', {}, 'Username'), h('dd', {}, u.username),
      h('dt', {}, 'Email'), h('dd', {}, u.email),
      h('dt', {}, 'Role'), h('dd', {}, u.role),
      h('dt', {}, 'User id (give it to a project owner to be invited)'), h('dd', {}, h('code', { id: 'my-id' }, u.id))),
    h('p', {}, h('a', { href: '/app/notifications/preferences' }, 'Notification preferences')));
}
