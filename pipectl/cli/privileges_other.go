//go:build !linux

package cli

import "github.com/pipestack/pipestack/pipeline"

// dropPrivileges does nothing outside Linux (Windows services run with the
// rights of their account).
func dropPrivileges(pc pipeline.PrivilegesConfig) (string, error) { return "", nil }
