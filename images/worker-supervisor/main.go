// Command boundary-worker-supervisor runs the Boundary worker as its child and stands in the
// container's PID 1 slot in the worker image:
//
//   - A change of the mounted configuration file reaches the worker as SIGHUP. The kubelet
//     rewrites a ConfigMap volume in place when the ConfigMap changes; on SIGHUP Boundary reloads
//     its worker tags and initial_upstreams (Worker.Reload in internal/daemon/worker/worker.go),
//     and its sessions carry on.
//   - SIGTERM is passed on, and Boundary drains: it reports itself shutting down, so that the
//     controller places no new session on it, and exits once its proxied connections have all
//     ended. If some are still open after -drain-timeout, a second SIGTERM makes Boundary close
//     them and exit, rather than wait for the kubelet's SIGKILL.
//   - SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are passed on, orphans are reaped, and the
//     supervisor exits with the worker's status (128 + the signal when a signal ended it).
//
// Standard library only. It needs no capability under any UID: a process may always signal its
// own child.
//
//	boundary-worker-supervisor -watch FILE [-poll 2s] [-drain-timeout 5m] -- boundary server ...
package main

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// passedOn are the signals given to the worker as they come. SIGTERM is one of them, and also
// starts the drain deadline.
var passedOn = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2,
}

type settings struct {
	watch        string
	poll         time.Duration
	drainTimeout time.Duration
	command      []string
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("boundary-worker-supervisor: ")
	var s settings
	flag.StringVar(&s.watch, "watch", "", "configuration file whose changes are passed on as SIGHUP (none: no reloads)")
	flag.DurationVar(&s.poll, "poll", 2*time.Second, "how often the watched file is read")
	flag.DurationVar(&s.drainTimeout, "drain-timeout", 5*time.Minute,
		"after SIGTERM, how long the worker may drain before it is told to stop at once")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: boundary-worker-supervisor [flags] -- command [args...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	s.command = flag.Args()
	if len(s.command) == 0 || s.poll <= 0 || s.drainTimeout < 0 {
		flag.Usage()
		os.Exit(2)
	}
	os.Exit(supervise(s))
}

func supervise(s settings) int {
	signals := make(chan os.Signal, 32)
	signal.Notify(signals, append([]os.Signal{syscall.SIGCHLD}, passedOn...)...)

	child := exec.Command(s.command[0], s.command[1:]...)
	child.Stdin, child.Stdout, child.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := child.Start(); err != nil {
		log.Printf("cannot start %s: %v", s.command[0], err)
		return 127
	}
	pid := child.Process.Pid

	var ticks <-chan time.Time
	var seen []byte
	if s.watch != "" {
		seen, _ = digest(s.watch)
		ticker := time.NewTicker(s.poll)
		defer ticker.Stop()
		ticks = ticker.C
	}
	var deadline <-chan time.Time
	stopping, unreadable := false, false
	for {
		select {
		case sig := <-signals:
			switch sig {
			case syscall.SIGCHLD:
				if status, exited := reap(pid); exited {
					return exitCode(status)
				}
			case syscall.SIGTERM:
				if !stopping {
					log.Printf("SIGTERM: the worker drains (at most %s) and exits", s.drainTimeout)
					stopping = true
					ticks = nil // no reloads while stopping
					deadline = time.After(s.drainTimeout)
				}
				signalChild(pid, sig)
			default:
				signalChild(pid, sig)
			}
		case <-deadline:
			log.Printf("drain timeout (%s) reached with connections still open: stopping the worker now",
				s.drainTimeout)
			signalChild(pid, syscall.SIGTERM)
			deadline = nil
		case <-ticks:
			current, err := digest(s.watch)
			if err != nil {
				if !unreadable {
					log.Printf("cannot read %s (keeping the running configuration): %v", s.watch, err)
				}
				unreadable = true
				continue
			}
			unreadable = false
			if !bytes.Equal(current, seen) {
				log.Printf("%s changed: reloading the worker (SIGHUP)", s.watch)
				seen = current
				signalChild(pid, syscall.SIGHUP)
			}
		}
	}
}

// digest is the SHA-256 of the file's content. The kubelet swaps a ConfigMap volume's files
// atomically (a symlink), so one read sees one version.
func digest(path string) ([]byte, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(content)
	return sum[:], nil
}

func signalChild(pid int, sig os.Signal) {
	if err := syscall.Kill(pid, sig.(syscall.Signal)); err != nil && err != syscall.ESRCH {
		log.Printf("cannot pass %v to the worker: %v", sig, err)
	}
}

// reap collects every exited child (as PID 1, orphans are ours too) and reports whether the
// worker was among them.
func reap(worker int) (syscall.WaitStatus, bool) {
	var found syscall.WaitStatus
	exited := false
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return found, exited
		}
		if pid == worker {
			found, exited = status, true
		}
	}
}

func exitCode(status syscall.WaitStatus) int {
	if status.Signaled() {
		log.Printf("the worker ended on %v", status.Signal())
		return 128 + int(status.Signal())
	}
	return status.ExitStatus()
}
