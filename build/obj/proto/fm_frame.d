build/obj/proto/fm_frame.o: proto/fm_frame.c proto/fm_frame.h \
 proto/fm_error.h
proto/fm_frame.h:
proto/fm_error.h:
