package kubelet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// mountScript runs in the container's own mount namespace: it bind-mounts each (source, target,
// mode) triple of its arguments up to "--", read-only when mode is "ro" (mode "rbind" binds
// recursively; "proc" mounts a proc file system), then execs the rest. The targets exist
// (Kubelet.mountPoint, chrootMountPoint).
const mountScript = `set -e
while [ "$1" != "--" ]; do
  src=$1 dst=$2 mode=$3
  shift 3
  case $mode in
  proc) mount -t proc proc "$dst" ;;
  rbind) mount --rbind "$src" "$dst" ;;
  *) mount --bind "$src" "$dst" ;;
  esac
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$dst"; fi
done
shift
exec "$@"`

// process is one run of a container.
type process struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	// exitCode is set when done is closed: the exit status, or 128+signal.
	exitCode int
}

// startProcess starts argv in the network namespace netnsPath, in a mount namespace of its own
// with mounts (triples as mountScript reads them), as uid/gid, with env, its output appended to
// logPath, in the working directory dir. With root set, the process runs chrooted there (argv[0]
// and dir are then paths inside root, and mounts' targets paths outside).
func startProcess(netnsPath string, mounts []string, uid, gid int64, env, argv []string, dir, root, logPath string) (*process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	full := []string{"--net=" + netnsPath, "--", "unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", mountScript, "sh"}
	full = append(full, mounts...)
	full = append(full, "--")
	if root != "" {
		// unshare without namespaces: chroot, chdir, then setgroups(0), setgid and setuid. The
		// parent-death signal does not survive the change of user (the process group is killed).
		full = append(full, "unshare", "--root="+root, "--wd="+dir, "--setgid", strconv.FormatInt(gid, 10),
			"--setuid", strconv.FormatInt(uid, 10), "--")
		dir = "/"
	} else if uid != 0 || gid != 0 {
		full = append(full, "setpriv", "--reuid", strconv.FormatInt(uid, 10), "--regid", strconv.FormatInt(gid, 10),
			"--clear-groups", "--pdeathsig", "KILL", "--")
	}
	full = append(full, argv...)
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		f.Close()
		return nil, errors.New("nsenter not found (Debian package util-linux)")
	}
	cmd := exec.Command(nsenter, full...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so that a container's children go with it; never outlive the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(f, "--- %s starting %q\n", time.Now().Format(time.RFC3339Nano), argv)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	p := &process{cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.exitCode = exitCode(cmd, err)
		fmt.Fprintf(f, "--- %s exited with code %d\n", time.Now().Format(time.RFC3339Nano), p.exitCode)
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// exitCode is the process's exit status, 128+N when killed by signal N (as container runtimes
// report it).
func exitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState == nil {
		return 128
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if err != nil && cmd.ProcessState.ExitCode() < 0 {
		return 128
	}
	return cmd.ProcessState.ExitCode()
}

// signal sends sig to the process's group.
func (p *process) signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// stop sends SIGTERM and, if the process has not exited by the deadline or abort is closed first,
// SIGKILL; it returns once the process has exited.
func (p *process) stop(deadline time.Time, abort <-chan struct{}) {
	select {
	case <-p.done:
		return
	default:
	}
	p.signal(syscall.SIGTERM)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.signal(syscall.SIGKILL)
		<-p.done
	case <-abort:
		p.signal(syscall.SIGKILL)
		<-p.done
	}
}
