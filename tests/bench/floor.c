/*
 * floor.c — the least CPU any HTTP/1.1 keep-alive server can spend per request on this
 * machine, for hello.sh to print beside pantherad and nginx.
 *
 * It does what the kernel makes every server do and nothing else: edge-triggered epoll,
 * one recv, one send of a canned response per blank line found. No parsing, no routing,
 * no headers read, no logging, no timeouts, no limits: not a server, a measuring stick.
 * On a loopback benchmark most of a request's CPU is the kernel's TCP path (the send
 * also runs the receiving side's softirq and wakes wrk), so this figure says how much of
 * nginx's and pantherad's CPU per request is left for user space to win at all.
 *
 * usage: floor PORT WORKERS    (listens on 127.0.0.1; the workers die with the master)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* The same body and Content-Type as the hello plugin and hello.sh's nginx. */
static const char RESPONSE[] = "HTTP/1.1 200 OK\r\n"
                               "Server: floor\r\n"
                               "Content-Type: application/json; charset=utf-8\r\n"
                               "Content-Length: 27\r\n"
                               "\r\n"
                               "{\"message\":\"Hello, World!\"}";

static void serve(int listener)
{
    int ep = epoll_create1(0), one = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = listener};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) < 0) {
        perror("floor: epoll");
        exit(1);
    }
    struct epoll_event events[512];
    static char buf[16384];
    for (;;) {
        int n = epoll_wait(ep, events, 512, -1);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int c;
                while ((c = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    struct epoll_event ce = {.events = EPOLLIN | EPOLLET, .data.fd = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce) < 0)
                        close(c);
                }
                continue;
            }
            for (;;) { /* edge-triggered: read until a short read says the socket is empty */
                ssize_t got = recv(fd, buf, sizeof(buf), 0);
                if (got > 0) {
                    const char *p = buf, *end = buf + got;
                    while ((p = memmem(p, (size_t)(end - p), "\r\n\r\n", 4))) {
                        send(fd, RESPONSE, sizeof(RESPONSE) - 1, MSG_NOSIGNAL);
                        p += 4;
                    }
                    if ((size_t)got < sizeof(buf))
                        break;
                    continue;
                }
                if (got == 0 || errno != EAGAIN)
                    close(fd);
                break;
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: floor PORT WORKERS\n");
        return 2;
    }
    int port = atoi(argv[1]), workers = atoi(argv[2]), one = 1;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(listener, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(listener, 4096) < 0) {
        perror("floor: listen");
        return 1;
    }
    pid_t master = getpid();
    for (int w = 0; w < workers; w++) {
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != master)
                _exit(0);
            serve(listener);
        }
        if (pid < 0) {
            perror("floor: fork");
            return 1;
        }
    }
    while (wait(NULL) > 0)
        ;
    return 0;
}
