// Command kindnetd is the offline kind node image's default CNI daemon, a small stand-in for
// kind's own kindnetd, whose module (sigs.k8s.io/kind/images/kindnetd) the Go module proxy
// does not serve. It runs from kind's unmodified default CNI manifest (a hostNetwork DaemonSet
// with HOST_IP, POD_IP and POD_SUBNET), and does what a kind cluster needs of its CNI:
//
//   - writes /etc/cni/net.d/10-kindnet.conflist for this node's pod CIDRs: ptp with host-local
//     addresses and masquerading of traffic that leaves the pod network, plus portmap;
//   - routes every other node's pod CIDRs through that node's internal address.
//
// It does not implement kindnetd's network policies. It polls the API every 10 seconds.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const (
	serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount"
	conflistPath   = "/etc/cni/net.d/10-kindnet.conflist"
	interval       = 10 * time.Second
)

type node struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		PodCIDRs []string `json:"podCIDRs"`
	} `json:"spec"`
	Status struct {
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
	} `json:"status"`
}

func (n node) internalIPs() []string {
	var ips []string
	for _, address := range n.Status.Addresses {
		if address.Type == "InternalIP" {
			ips = append(ips, address.Address)
		}
	}
	return ips
}

type apiClient struct {
	base string
	http *http.Client
}

func newAPIClient() (*apiClient, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, fmt.Errorf("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
	}
	ca, err := os.ReadFile(filepath.Join(serviceAccount, "ca.crt"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s/ca.crt", serviceAccount)
	}
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	return &apiClient{
		base: "https://" + net.JoinHostPort(host, port),
		http: &http.Client{Transport: transport, Timeout: 15 * time.Second},
	}, nil
}

func (c *apiClient) nodes() ([]node, error) {
	// The token is read on every call: bound service account tokens are rotated in place.
	token, err := os.ReadFile(filepath.Join(serviceAccount, "token"))
	if err != nil {
		return nil, err
	}
	request, err := http.NewRequest(http.MethodGet, c.base+"/api/v1/nodes", nil)
	if err != nil {
		return nil, err
	}
	request.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	response, err := c.http.Do(request)
	if err != nil {
		return nil, err
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("listing nodes: %s", response.Status)
	}
	var list struct {
		Items []node `json:"items"`
	}
	return list.Items, json.NewDecoder(response.Body).Decode(&list)
}

func conflist(podCIDRs []string) ([]byte, error) {
	var ranges [][]map[string]string
	routes := []map[string]string{}
	for _, cidr := range podCIDRs {
		ranges = append(ranges, []map[string]string{{"subnet": cidr}})
		if strings.Contains(cidr, ":") {
			routes = append(routes, map[string]string{"dst": "::/0"})
		} else {
			routes = append(routes, map[string]string{"dst": "0.0.0.0/0"})
		}
	}
	config := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "kindnet",
		"plugins": []any{
			map[string]any{
				"type":   "ptp",
				"ipMasq": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": "/run/cni-ipam-state",
					"routes":  routes,
					"ranges":  ranges,
				},
				"mtu": 1500,
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(config, "", "  ")
}

// writeIfChanged replaces the file atomically, and only when its content changes: the
// container runtime watches the directory.
func writeIfChanged(path string, content []byte) (bool, error) {
	if current, err := os.ReadFile(path); err == nil && bytes.Equal(current, content) {
		return false, nil
	}
	temporary := path + ".tmp"
	if err := os.WriteFile(temporary, content, 0o644); err != nil {
		return false, err
	}
	return true, os.Rename(temporary, path)
}

func sameFamily(cidr, address string) bool {
	return strings.Contains(cidr, ":") == strings.Contains(address, ":")
}

func reconcile(client *apiClient, hostIP string) error {
	nodes, err := client.nodes()
	if err != nil {
		return err
	}
	for _, n := range nodes {
		ours := false
		for _, ip := range n.internalIPs() {
			ours = ours || ip == hostIP
		}
		if ours {
			if len(n.Spec.PodCIDRs) == 0 {
				return fmt.Errorf("node %s has no pod CIDR yet", n.Metadata.Name)
			}
			content, err := conflist(n.Spec.PodCIDRs)
			if err != nil {
				return err
			}
			if changed, err := writeIfChanged(conflistPath, content); err != nil {
				return err
			} else if changed {
				log.Printf("wrote %s for %s (%s)", conflistPath, n.Metadata.Name, strings.Join(n.Spec.PodCIDRs, ","))
			}
			continue
		}
		for _, cidr := range n.Spec.PodCIDRs {
			for _, ip := range n.internalIPs() {
				if !sameFamily(cidr, ip) {
					continue
				}
				if output, err := exec.Command("ip", "route", "replace", cidr, "via", ip).CombinedOutput(); err != nil {
					return fmt.Errorf("route %s via %s: %v: %s", cidr, ip, err, output)
				}
			}
		}
	}
	return nil
}

func main() {
	hostIP := os.Getenv("HOST_IP")
	if hostIP == "" {
		log.Fatal("HOST_IP is not set (the DaemonSet passes status.hostIP)")
	}
	client, err := newAPIClient()
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("kindnetd (boundary-k8s offline stand-in) on %s, pod subnet %s", hostIP, os.Getenv("POD_SUBNET"))
	for {
		if err := reconcile(client, hostIP); err != nil {
			log.Printf("reconcile: %v", err)
		}
		time.Sleep(interval)
	}
}
