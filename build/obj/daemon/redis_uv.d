build/obj/daemon/redis_uv.o: daemon/redis_uv.c daemon/redis_uv.h
daemon/redis_uv.h:
