/* main.c -- fmredisd: arguments, configuration, the loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "server.h"

int main(int argc, char **argv)
{
    fm_server srv;
    char err[512];
    const char *tls;
    int rc;

    memset(&srv, 0, sizeof(srv));
    fm_log_detect_journal();
    rc = fm_config_parse_args(argc, argv, &srv.args, err, sizeof(err));
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "fmredisd: %s\n", err);
        fm_config_args_free(&srv.args);
        return rc < 0 ? 1 : 0;
    }
    srv.cfg = fm_config_load(&srv.args, err, sizeof(err));
    if (srv.cfg == NULL) {
        fprintf(stderr, "fmredisd: %s\n", err);
        fm_config_args_free(&srv.args);
        return 1;
    }
    /* The TLS files are read now, so that -t finds a bad one too. */
    if (srv.cfg->redis_tls && (srv.tls = fm_tls_create(srv.cfg, err, sizeof(err))) == NULL) {
        fprintf(stderr, "fmredisd: %s\n", err);
        fm_config_free(srv.cfg);
        fm_config_args_free(&srv.args);
        return 1;
    }
    if (srv.args.check_only) {
        gid_t gid;

        /* Resolved here too, so -t finds a group that does not exist. */
        rc = fm_config_socket_gid(srv.cfg, &gid, err, sizeof(err)) < 0;
        if (rc)
            fprintf(stderr, "fmredisd: %s\n", err);
        else
            printf("fmredisd: configuration %s is valid\n",
                   srv.args.file ? srv.args.file : "(defaults)");
        fm_tls_free(srv.tls);
        fm_config_free(srv.cfg);
        fm_config_args_free(&srv.args);
        return rc;
    }
    fm_log_set_level((fm_log_level)srv.cfg->log_level);
    if (srv.cfg->redis_tls && !srv.cfg->redis_tls_verify)
        fm_log_warn("redis_tls_verify no: the Redis server's certificate is not checked, so "
                    "anyone on the path can pose as Redis; meant for tests only");
    /* A client that vanishes mid-write must cost an EPIPE, not the daemon. */
    signal(SIGPIPE, SIG_IGN);

    srv.loop = uv_default_loop();
    if (fm_server_start(&srv) != 0) {
        fm_log_error("could not start");
        fm_server_free(&srv);
        fm_config_args_free(&srv.args);
        return 1;
    }
    /* Not the URL: it may hold a password. */
    tls = srv.cfg->redis_tls ? ", over TLS" : "";
    if (srv.cfg->nsentinels > 0)
        fm_log_info("%s started, Redis: the master \"%s\" of %zu sentinel(s), db %d%s",
                    fm_config_version(), srv.cfg->redis_sentinel_master, srv.cfg->nsentinels,
                    srv.cfg->redis_db, tls);
    else if (srv.cfg->ncluster_nodes > 0)
        fm_log_info("%s started, Redis: a Cluster, first asked at %s:%d (%zu seed node(s))%s",
                    fm_config_version(), srv.cfg->cluster_nodes[0].host,
                    srv.cfg->cluster_nodes[0].port, srv.cfg->ncluster_nodes, tls);
    else if (srv.cfg->redis.path != NULL)
        fm_log_info("%s started, Redis at %s, db %d", fm_config_version(), srv.cfg->redis.path,
                    srv.cfg->redis_db);
    else
        fm_log_info("%s started, Redis at %s:%d, db %d%s", fm_config_version(),
                    srv.cfg->redis.host, srv.cfg->redis.port, srv.cfg->redis_db, tls);
    uv_run(srv.loop, UV_RUN_DEFAULT);
    uv_loop_close(srv.loop);
    fm_server_free(&srv);
    fm_config_args_free(&srv.args);
    return 0;
}
