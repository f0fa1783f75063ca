build/obj/daemon/main.o: daemon/main.c daemon/config.h daemon/log.h \
 daemon/server.h proto/fm_buf.h proto/fm_error.h proto/fm_frame.h \
 proto/fm_error.h proto/fm_request.h proto/fm_json.h daemon/link.h
daemon/config.h:
daemon/log.h:
daemon/server.h:
proto/fm_buf.h:
proto/fm_error.h:
proto/fm_frame.h:
proto/fm_error.h:
proto/fm_request.h:
proto/fm_json.h:
daemon/link.h:
