/*
 * tokens.c — the two tokens a session holds.
 *
 * The access token is the host's: a short-lived HS256 JWT from px_token_issue, verified by
 * the gateway on every request, never stored.
 *
 * The refresh token is ours: 32 random bytes, base64url, handed to the client once. The
 * database keeps only its SHA-256 (a leaked table yields no usable token; a plain hash is
 * enough because the token has 256 bits of entropy, unlike a password). Each login starts
 * a family; each refresh revokes the presented token and issues the next one of the same
 * family, so a stolen token that is used after its owner refreshed (or the owner's token
 * used after the thief refreshed) is seen as reuse, and the whole family is revoked.
 */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "user.h"

int tokens_new(char text[TOKEN_TEXT_LEN + 1], char hash[TOKEN_HASH_LEN + 1])
{
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1 ||
        px_base64_encode(raw, sizeof(raw), PX_BASE64_URL, text, TOKEN_TEXT_LEN + 1) !=
            TOKEN_TEXT_LEN)
        return PX_EINTERNAL;
    tokens_hash(text, TOKEN_TEXT_LEN, hash);
    return 0;
}

void tokens_hash(const char *text, size_t len, char hash[TOKEN_HASH_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        memset(md, 0, 32); /* matches no stored hash: those are digests of real tokens */
    for (int i = 0; i < 32; i++)
        snprintf(hash + 2 * i, 3, "%02x", md[i]);
}

json_t *tokens_answer(px_req_t *req, const char *user_id, const char *username, const char *role,
                      const char *refresh)
{
    int64_t expires_in = 0;
    const char *access = px_token_issue(req, user_id, role, &expires_in);
    if (!access) {
        px_log(user_plugin, PX_LOG_ERROR, "px_token_issue failed for user %s", user_id);
        return NULL;
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:I}", "userId", user_id, "username", username,
                     "accessToken", access, "refreshToken", refresh, "expiresIn",
                     (json_int_t)expires_in);
}
