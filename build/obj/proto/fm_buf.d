build/obj/proto/fm_buf.o: proto/fm_buf.c proto/fm_buf.h
proto/fm_buf.h:
