package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Keys are generated here, never committed.
func TestReadPrivateKey(t *testing.T) {
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	sec1 := func(k *ecdsa.PrivateKey) []byte {
		der, _ := x509.MarshalECPrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	tests := []struct {
		name    string
		pem     []byte
		wantErr string
	}{
		{"rsa 2048 pkcs8", pkcs8(rsa2048), ""},
		{"rsa 2048 pkcs1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsa2048)}), ""},
		{"ec p256 pkcs8", pkcs8(p256), ""},
		{"ec p256 sec1", sec1(p256), ""},
		{"ec p256 sec1 after a certificate block", append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), sec1(p256)...), ""},
		{"rsa 1024", pkcs8(rsa1024), "RSA key of 1024 bits"},
		{"ec p384", sec1(p384), "only P-256"},
		{"ed25519", pkcs8(ed), "only RSA"},
		{"encrypted", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), "encrypted"},
		{"not pem", []byte("hello"), "no PEM private key"},
		{"corrupt", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), "PRIVATE KEY block"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(path, tt.pem, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ReadPrivateKey(path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err %v, want one naming %s and %q", err, path, tt.wantErr)
			}
		})
	}
}

// A fapi2 frontend file with its key under frontends/<name>/ loads, with
// PAR always and DPoP on; a weak key is refused at private_key_file.
func TestLoadFAPI2Frontend(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "frontends", "bank"), 0o755))
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	must(os.WriteFile(filepath.Join(dir, "frontends", "bank", "client.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	must(os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte("server: {public_url: \"https://app.example.com\"}\nsessions: {store: memory}\nfrontends_dir: frontends\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "frontends", "bank.yaml"), []byte(`name: bank
mount: /bank
oidc:
  issuer: "https://idp.example.com"
  client_id: bank-bff
  profile: fapi2
  client_auth: private_key_jwt
  private_key_file: bank/client.key
`), 0o644))
	c, err := Load(filepath.Join(dir, "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Frontends[0].OIDC
	if !o.UsesDPoP() || o.PARMode() != PARAlways || o.PrivateKeyPath != filepath.Join(dir, "frontends", "bank", "client.key") {
		t.Fatalf("fapi2 frontend: dpop %v par %s key %s", o.UsesDPoP(), o.PARMode(), o.PrivateKeyPath)
	}
	if _, err := ReadPrivateKey(o.PrivateKeyPath); err != nil {
		t.Fatal(err)
	}

	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	must(os.WriteFile(filepath.Join(dir, "frontends", "bank", "client.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weak)}), 0o600))
	_, err = Load(filepath.Join(dir, "gateway.yaml"))
	if err == nil || !strings.Contains(err.Error(), "oidc.private_key_file:") || !strings.Contains(err.Error(), "RSA key of 1024 bits") {
		t.Fatalf("weak key: %v", err)
	}
}
