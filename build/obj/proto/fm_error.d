build/obj/proto/fm_error.o: proto/fm_error.c proto/fm_error.h
proto/fm_error.h:
