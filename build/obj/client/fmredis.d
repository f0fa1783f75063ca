build/obj/client/fmredis.o: client/fmredis.c proto/fm_buf.h \
 proto/fm_frame.h proto/fm_error.h proto/fm_json.h client/fmredis.h
proto/fm_buf.h:
proto/fm_frame.h:
proto/fm_error.h:
proto/fm_json.h:
client/fmredis.h:
