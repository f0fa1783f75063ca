build/obj/daemon/config.o: daemon/config.c daemon/config.h daemon/log.h
daemon/config.h:
daemon/log.h:
