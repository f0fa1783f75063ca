build/obj/daemon/token.o: daemon/token.c daemon/token.h
daemon/token.h:
