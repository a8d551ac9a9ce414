// Command boundary-worker-ready is the worker image's readiness probe: it exits 0 when the
// Boundary worker in the same container reports an upstream connection in state READY, and 1
// otherwise, saying why on stderr. Boundary's ops listener answers /health with 200 whether or
// not the worker is connected; only the body of /health?worker_info=true tells, so an httpGet
// probe cannot. A static binary, so that the image needs neither a shell, curl nor grep.
//
//	boundary-worker-ready [-addr 127.0.0.1:9203] [-timeout 2s]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"
)

type health struct {
	WorkerProcessInfo *struct {
		UpstreamConnectionState string `json:"upstream_connection_state"`
	} `json:"worker_process_info"`
}

func main() {
	address := flag.String("addr", "127.0.0.1:9203", "the worker's ops listener")
	timeout := flag.Duration("timeout", 2*time.Second, "how long to wait for an answer")
	flag.Parse()
	if err := ready(*address, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "boundary-worker-ready:", err)
		os.Exit(1)
	}
}

func ready(address string, timeout time.Duration) error {
	client := http.Client{Timeout: timeout}
	response, err := client.Get("http://" + address + "/health?worker_info=true")
	if err != nil {
		return err
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return fmt.Errorf("/health answered %s", response.Status)
	}
	var body health
	if err := json.NewDecoder(response.Body).Decode(&body); err != nil {
		return fmt.Errorf("/health: %w", err)
	}
	if body.WorkerProcessInfo == nil {
		return fmt.Errorf("/health has no worker_process_info: is this a worker?")
	}
	if state := body.WorkerProcessInfo.UpstreamConnectionState; state != "READY" {
		return fmt.Errorf("upstream connection is %q, not READY", state)
	}
	return nil
}
