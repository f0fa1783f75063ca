build/obj/client/cli.o: client/cli.c client/fmredis.h
client/fmredis.h:
