build/obj/daemon/lock.o: daemon/lock.c daemon/lock.h daemon/server.h \
 daemon/config.h proto/fm_buf.h proto/fm_error.h proto/fm_frame.h \
 proto/fm_error.h proto/fm_request.h proto/fm_json.h daemon/link.h \
 daemon/log.h daemon/ops.h daemon/slot.h daemon/token.h
daemon/lock.h:
daemon/server.h:
daemon/config.h:
proto/fm_buf.h:
proto/fm_error.h:
proto/fm_frame.h:
proto/fm_error.h:
proto/fm_request.h:
proto/fm_json.h:
daemon/link.h:
daemon/log.h:
daemon/ops.h:
daemon/slot.h:
daemon/token.h:
