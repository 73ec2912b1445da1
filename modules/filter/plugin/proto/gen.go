// Package filterpluginpb is the generated code of filterplugin.proto, the
// protocol between pipestack and an out-of-process filter plugin. It is
// committed: building needs no protoc. To regenerate (protoc 3.21,
// protoc-gen-go v1.36.12, protoc-gen-go-grpc v1.6.2 on PATH):
//
//	go generate ./modules/filter/plugin/proto
package filterpluginpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative filterplugin.proto
