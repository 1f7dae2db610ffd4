//go:build !linux

package launch

import "os/exec"

// dieWithParent: only Linux has a parent-death signal; elsewhere a provider
// outlives a process that dies without calling Stop.
func dieWithParent(*exec.Cmd) {}
