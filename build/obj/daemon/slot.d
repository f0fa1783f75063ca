build/obj/daemon/slot.o: daemon/slot.c daemon/slot.h
daemon/slot.h:
