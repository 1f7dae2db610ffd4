package launch

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel send node SIGTERM when this process dies
// without calling Stop (SIGKILL, a crash), so no provider outlives a demo.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
