build/obj/proto/fm_request.o: proto/fm_request.c proto/fm_request.h \
 proto/fm_error.h proto/fm_json.h
proto/fm_request.h:
proto/fm_error.h:
proto/fm_json.h:
