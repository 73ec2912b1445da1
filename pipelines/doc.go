// Package pipelines holds the example pipeline files (*.yaml) and, under
// testdata/invalid/, broken ones with the exact error each must produce
// (*.err). It has no Go API: its test is the golden test that keeps both
// honest. After a deliberate change of an error message, rewrite the
// expectations with
//
//	go test ./pipelines -run TestInvalidPipelines -update
//
// and review the diff.
package pipelines
