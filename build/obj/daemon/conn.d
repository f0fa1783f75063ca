build/obj/daemon/conn.o: daemon/conn.c daemon/log.h daemon/ops.h \
 daemon/server.h daemon/config.h proto/fm_buf.h proto/fm_error.h \
 proto/fm_frame.h proto/fm_error.h proto/fm_request.h proto/fm_json.h \
 daemon/link.h daemon/wake.h
daemon/log.h:
daemon/ops.h:
daemon/server.h:
daemon/config.h:
proto/fm_buf.h:
proto/fm_error.h:
proto/fm_frame.h:
proto/fm_error.h:
proto/fm_request.h:
proto/fm_json.h:
daemon/link.h:
daemon/wake.h:
