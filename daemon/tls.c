/* tls.c -- the TLS settings: OpenSSL's client context, the sessions made
 * from it, and what a failed session is reported as.
 *
 * Verification is on unless redis_tls_verify says no: the chain against
 * redis_tls_ca_file / redis_tls_ca_dir or else the system store, and the
 * name against the URL's host (or redis_tls_server_name), which is also
 * sent as SNI when it is a name. An IP address is checked against the
 * certificate's IP addresses and never sent as SNI (RFC 6066). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "tls_int.h"

/* OpenSSL's own words for its last error, queue emptied. */
static void openssl_words(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    if (r != NULL)
        snprintf(buf, len, "%s", r);
    else if (e != 0)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "no reason given");
    ERR_clear_error();
}

static fm_tls *create_fail(fm_tls *tls, char *err, size_t errlen, const char *what,
                           const char *path)
{
    char why[256];

    /* A missing or unreadable file is said plainly; OpenSSL's word for it
     * is "system lib". */
    if (path != NULL && access(path, R_OK) != 0)
        snprintf(why, sizeof(why), "%s", strerror(errno));
    else
        openssl_words(why, sizeof(why));
    if (path != NULL)
        snprintf(err, errlen, "%s %s: %s", what, path, why);
    else
        snprintf(err, errlen, "%s: %s", what, why);
    ERR_clear_error();
    fm_tls_free(tls);
    return NULL;
}

/* An encrypted key would make OpenSSL ask for its passphrase on the
 * terminal, which a daemon has not: it is refused instead, and u (an int)
 * notes that it was asked. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    if (u != NULL)
        *(int *)u = 1;
    return -1;
}

fm_tls *fm_tls_create(const fm_config *cfg, char *err, size_t errlen)
{
    fm_tls *tls = calloc(1, sizeof(*tls));
    int asked = 0;

    if (tls == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    tls->ctx = SSL_CTX_new(TLS_client_method());
    if (tls->ctx == NULL)
        return create_fail(tls, err, errlen, "TLS", NULL);
    SSL_CTX_set_min_proto_version(tls->ctx, TLS1_2_VERSION);
    SSL_CTX_set_default_passwd_cb(tls->ctx, no_passphrase);
    SSL_CTX_set_default_passwd_cb_userdata(tls->ctx, &asked);
    if (cfg->redis_tls_verify) {
        SSL_CTX_set_verify(tls->ctx, SSL_VERIFY_PEER, NULL);
        if (cfg->redis_tls_ca_file != NULL || cfg->redis_tls_ca_dir != NULL) {
            if (SSL_CTX_load_verify_locations(tls->ctx, cfg->redis_tls_ca_file,
                                              cfg->redis_tls_ca_dir) != 1)
                return create_fail(tls, err, errlen,
                                   cfg->redis_tls_ca_file ? "redis_tls_ca_file"
                                                          : "redis_tls_ca_dir",
                                   cfg->redis_tls_ca_file ? cfg->redis_tls_ca_file
                                                          : cfg->redis_tls_ca_dir);
        } else if (SSL_CTX_set_default_verify_paths(tls->ctx) != 1) {
            return create_fail(tls, err, errlen, "TLS: the system's CA store", NULL);
        }
    } else {
        SSL_CTX_set_verify(tls->ctx, SSL_VERIFY_NONE, NULL);
    }
    if (cfg->redis_tls_cert_file != NULL) {
        if (SSL_CTX_use_certificate_chain_file(tls->ctx, cfg->redis_tls_cert_file) != 1)
            return create_fail(tls, err, errlen, "redis_tls_cert_file", cfg->redis_tls_cert_file);
        /* The path, not the directive: it may be the service's credential. */
        if (SSL_CTX_use_PrivateKey_file(tls->ctx, cfg->redis_tls_key, SSL_FILETYPE_PEM) != 1) {
            if (!asked)
                return create_fail(tls, err, errlen, "the TLS key", cfg->redis_tls_key);
            snprintf(err, errlen, "the TLS key %s is encrypted: give an unencrypted one (the "
                     "daemon cannot ask for a passphrase)", cfg->redis_tls_key);
            ERR_clear_error();
            fm_tls_free(tls);
            return NULL;
        }
        if (SSL_CTX_check_private_key(tls->ctx) != 1)
            return create_fail(tls, err, errlen, "the TLS key", cfg->redis_tls_key);
    }
    SSL_CTX_set_default_passwd_cb_userdata(tls->ctx, NULL);
    if (cfg->redis_tls_server_name != NULL &&
        (tls->server_name = strdup(cfg->redis_tls_server_name)) == NULL) {
        snprintf(err, errlen, "out of memory");
        fm_tls_free(tls);
        return NULL;
    }
    return tls;
}

void fm_tls_free(fm_tls *tls)
{
    if (tls == NULL)
        return;
    /* Sessions hold their own reference to the context. */
    SSL_CTX_free(tls->ctx);
    if (tls->dir[0] != '\0' && rmdir(tls->dir) != 0)
        fm_log_warn("TLS: could not remove %s: %s", tls->dir, strerror(errno));
    free(tls->server_name);
    free(tls);
}

SSL *fm_tls_session(fm_tls *tls, const char *host, char *err, size_t errlen)
{
    const char *name = tls->server_name != NULL ? tls->server_name : host;
    unsigned char ip[sizeof(struct in6_addr)];
    SSL *ssl = SSL_new(tls->ctx);
    int ok;

    if (ssl == NULL) {
        snprintf(err, errlen, "TLS: out of memory");
        return NULL;
    }
    SSL_set_connect_state(ssl);
    if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1)
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
    else
        ok = SSL_set_tlsext_host_name(ssl, name) == 1 && SSL_set1_host(ssl, name) == 1;
    if (!ok) {
        char why[128];

        openssl_words(why, sizeof(why));
        snprintf(err, errlen, "TLS: the server name \"%.200s\": %s", name, why);
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

/* The certificate checks an operator can act on, in the words the docs
 * use; OpenSSL's own text follows in parentheses. */
static const char *verify_words(long v)
{
    switch (v) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return "the server's certificate is signed by an unknown CA";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return "certificate name mismatch: the server's certificate is for another name";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "the server's certificate expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "the server's certificate is not valid yet";
    default:
        return "the server's certificate was refused";
    }
}

void fm_tls_why(SSL *ssl, int rc, char *buf, size_t len)
{
    int kind = SSL_get_error(ssl, rc);
    long v = SSL_get_verify_result(ssl);
    char words[200];

    /* The result is kept also when nothing checks it (redis_tls_verify
     * no): it is the reason only when OpenSSL says verification failed. */
    unsigned long e = ERR_peek_error();

    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
        v != X509_V_OK) {
        snprintf(buf, len, "%s (%s)", verify_words(v), X509_verify_cert_error_string(v));
        ERR_clear_error();
        return;
    }
    if (kind == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        snprintf(buf, len, "the connection ended mid-session");
        return;
    }
    openssl_words(words, sizeof(words));
    /* An alert the server sent ("tlsv1 alert unknown ca" when it did not
     * take our certificate) must not read as our own check failing. */
    if (strstr(words, " alert ") != NULL)
        snprintf(buf, len, "the server refused the session (alert: %s)", words);
    else
        snprintf(buf, len, "%s", words);
}
