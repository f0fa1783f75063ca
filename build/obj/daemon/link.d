build/obj/daemon/link.o: daemon/link.c daemon/link.h daemon/config.h \
 daemon/log.h daemon/redis_uv.h
daemon/link.h:
daemon/config.h:
daemon/log.h:
daemon/redis_uv.h:
