build/obj/proto/fm_json.o: proto/fm_json.c proto/fm_json.h
proto/fm_json.h:
