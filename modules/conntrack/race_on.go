//go:build race

package conntrack

// raceBuild: built with -race (prefetch.go leaves out its racy loads).
const raceBuild = true
