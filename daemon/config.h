/* config.h -- fmredisd.conf and --name value overrides.
 *
 * One table (config.c) describes every directive: its type, limits, default
 * and whether it can change on SIGHUP. Loading builds a fresh fm_config;
 * a reload builds another and swaps it in only when it is wholly valid. */
#ifndef FM_CONFIG_H
#define FM_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FM_SOCKET_PATH_MAX 107  /* sun_path minus the NUL; libuv truncates silently */
#define FM_SENTINELS_MAX 16     /* redis_sentinels: more would only slow a failover's search */
#define FM_SENTINEL_PORT 26379  /* a sentinel's port when its address names none */
#define FM_CLUSTER_SEEDS_MAX 16 /* redis_cluster_nodes: any one node tells all the others */
#define FM_REDIS_PORT 6379      /* a cluster node's port when its address names none */

typedef struct fm_redis_addr {
    char *host;          /* NULL for a Unix socket */
    int port;
    char *path;          /* Unix socket path, or NULL */
} fm_redis_addr;

/* lock_value_format: what a lock's value is in Redis. */
typedef enum fm_lockval {
    FM_LOCKVAL_TOKEN,            /* the token itself */
    FM_LOCKVAL_FLOWMONKEY_JSON   /* {"owner":"<token>","expiresAt":<ms>} */
} fm_lockval;

typedef struct fm_config {
    char *socket;
    int socket_mode;
    char *socket_group;
    char *redis_url;
    char *redis_password_file;
    int64_t request_timeout_ms;
    char *lock_key_prefix;
    int64_t lock_default_ttl_ms;
    int64_t lock_retry_delay_ms;
    int64_t lock_max_retries;
    char *lock_release_channel;
    char *wake_channel;
    char *cache_key_prefix;
    int64_t cache_ttl_ms;
    int64_t cache_near_bytes;   /* 0: no near cache */
    int64_t max_clients;
    int64_t max_frame_bytes;
    int64_t max_inflight_per_client;
    int64_t max_batch;
    int64_t max_output_bytes;
    int log_level;
    int64_t reconnect_step_ms;
    int64_t reconnect_max_ms;
    char *allow_uids;
    char *allow_gids;
    char *redis_sentinels;
    char *redis_sentinel_master;
    char *redis_cluster_nodes;
    char *redis_sentinel_password;
    int lock_value_format;   /* fm_lockval */
    char *redis_tls_ca_file;
    char *redis_tls_ca_dir;
    char *redis_tls_server_name;
    char *redis_tls_cert_file;
    char *redis_tls_key_file;
    int redis_tls_verify;    /* 1: yes */

    /* Derived from the directives above when the config is loaded. */
    fm_redis_addr redis;
    char *redis_user;        /* NULL: AUTH with the password alone */
    char *redis_password;    /* from the URL, or redis_password_file */
    char *redis_file_password; /* while loading only */
    fm_redis_addr *sentinels; /* redis_sentinels, in the order given */
    size_t nsentinels;
    fm_redis_addr *cluster_nodes; /* redis_cluster_nodes, in the order given */
    size_t ncluster_nodes;
    uint64_t given;          /* directives set by the file or the command line */
    int redis_db;
    int redis_tls;           /* redis_url is rediss:// */
    char *redis_tls_key;     /* the client key's path: the credential, or redis_tls_key_file */
    uid_t *uids;
    size_t nuids;
    gid_t *gids;
    size_t ngids;
} fm_config;

/* Overrides from the command line, kept to be applied again on reload. */
typedef struct fm_config_args {
    const char *file;        /* -c FILE, or NULL */
    int check_only;          /* -t */
    size_t nover;
    const char **names;      /* parallel arrays of --name value */
    const char **values;
} fm_config_args;

/* Parses argv: -c FILE, -t, --name value, -h/--help, -v/--version. Returns 0,
 * 1 when the process should exit 0 (help, version printed), or -1 with a
 * message in err. args arrays point into argv. */
int fm_config_parse_args(int argc, char **argv, fm_config_args *args,
                         char *err, size_t errlen);
void fm_config_args_free(fm_config_args *args);

/* Builds a configuration: defaults, then $REDIS_URL, then the file, then the
 * overrides. Returns NULL with a message ("FILE:LINE: ...") in err. */
fm_config *fm_config_load(const fm_config_args *args, char *err, size_t errlen);
void fm_config_free(fm_config *cfg);

/* Names the directives whose values differ; for each calls fn with its name
 * and whether it can change without a restart. */
void fm_config_diff(const fm_config *a, const fm_config *b,
                    void (*fn)(const char *name, int live, void *arg), void *arg);

/* Swaps the values of directives that need a restart (and what derives
 * from them) from cur into next, so a reloaded configuration keeps running
 * with what the process actually uses. */
void fm_config_carry_restart(fm_config *next, fm_config *cur);

/* The group socket_group names: 0 with *gid set, 1 when socket_group is
 * unset (the socket keeps the daemon's group), or -1 with a message when no
 * such group exists. A name is looked up with getgrnam(3), which may ask a
 * directory service (sssd, LDAP) and block: for the start and -t, never on
 * the loop. A number is taken as a gid as it is. */
int fm_config_socket_gid(const fm_config *cfg, gid_t *gid, char *err, size_t errlen);

/* lock_value_format as the file spells it ("token", "flowmonkey-json"). */
const char *fm_config_lockval_name(const fm_config *cfg);

/* "fmredisd 0.1.0" */
const char *fm_config_version(void);

/* Every directive name, default and description, for --help and tests. */
size_t fm_config_count(void);
const char *fm_config_name(size_t i);

#endif
