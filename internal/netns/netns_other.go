//go:build !linux

package netns

import "errors"

// Do runs fn; a namespace other than "" is an error off Linux.
func Do(ns string, fn func() error) error {
	if ns != "" {
		return errors.New("netns: network namespaces are Linux only")
	}
	return fn()
}
