// Package benchpb is the generated code of bench.proto, the plain
// protobuf stream the plugin benchmarks measure as the literal
// baseline (committed; regenerate as ../../proto's gen.go says).
package benchpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative bench.proto
