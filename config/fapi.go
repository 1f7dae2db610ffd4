package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Client authentication methods (oidc.client_auth).
const (
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
	PrivateKeyJWT     = "private_key_jwt"
)

// oidc.par values.
const (
	PARAuto   = "auto"
	PARAlways = "always"
	PARNever  = "never"
)

// ProfileFAPI2 is oidc.profile for the FAPI 2.0 Security Profile.
const ProfileFAPI2 = "fapi2"

// UsesDPoP reports whether tokens are DPoP-bound: dpop: true, or profile
// fapi2.
func (o *OIDC) UsesDPoP() bool { return o.DPoP || o.Profile == ProfileFAPI2 }

// PARMode is the effective par setting: always under profile fapi2.
func (o *OIDC) PARMode() string {
	if o.Profile == ProfileFAPI2 && o.PAR != PARNever {
		return PARAlways
	}
	if o.PAR == "" {
		return PARAuto
	}
	return o.PAR
}

// oidcDefaults fills the client authentication and PAR defaults and
// resolves private_key_file against the folder of the file it is in.
func (c *Config) oidcDefaults(f *Frontend) {
	o := &f.OIDC
	setString(&o.ClientAuth, ClientSecretBasic)
	setString(&o.PAR, PARAuto)
	if o.PrivateKeyFile != "" {
		o.PrivateKeyPath = o.PrivateKeyFile
		if !filepath.IsAbs(o.PrivateKeyFile) {
			src := f.Source
			if src == "" {
				src = c.Path
			}
			o.PrivateKeyPath = filepath.Join(filepath.Dir(src), o.PrivateKeyFile)
		}
	}
}

// clientAuth checks client_auth, private_key_file, par, dpop and profile.
// It reads the key file (a local read, like ${file:...}), never the network.
func (v *validator) clientAuth(w where, f *Frontend) {
	o := &f.OIDC
	switch o.ClientAuth {
	case ClientSecretBasic, ClientSecretPost:
		if o.PrivateKeyFile != "" {
			w.errorf("oidc.private_key_file", "is only used with client_auth: private_key_jwt")
		}
	case PrivateKeyJWT:
		if o.PrivateKeyFile == "" {
			w.errorf("oidc.private_key_file", "is required with client_auth: private_key_jwt")
			break
		}
		path, err := v.c.FrontendFile(f, o.PrivateKeyFile)
		if err != nil {
			w.errorf("oidc.private_key_file", "%v", err)
			break
		}
		if _, err := ReadPrivateKey(path); err != nil {
			w.errorf("oidc.private_key_file", "%v", err)
		}
	default:
		w.errorf("oidc.client_auth", "must be client_secret_basic, client_secret_post or private_key_jwt, not %s", w.q("oidc.client_auth", o.ClientAuth))
	}
	switch o.PAR {
	case PARAuto, PARAlways, PARNever:
	default:
		w.errorf("oidc.par", "must be auto, always or never, not %s", w.q("oidc.par", o.PAR))
	}
	switch o.Profile {
	case "":
	case ProfileFAPI2:
		if o.ClientAuth != PrivateKeyJWT {
			w.errorf("oidc.client_auth", "profile fapi2 requires private_key_jwt, not %s", w.q("oidc.client_auth", o.ClientAuth))
		}
		if o.PAR == PARNever {
			w.errorf("oidc.par", "profile fapi2 requires pushed authorization requests: remove par or set it to always")
		}
		// dpop is a bool, so only a key written in the file can contradict.
		if !o.DPoP && v.c.info(w.file) != nil {
			if _, written := v.c.info(w.file).lines[w.prefix+"oidc.dpop"]; written {
				w.errorf("oidc.dpop", "profile fapi2 requires DPoP-bound tokens: remove dpop or set it to true")
			}
		}
	default:
		w.errorf("oidc.profile", `must be "" or fapi2, not %s`, w.q("oidc.profile", o.Profile))
	}
}

// ReadPrivateKey reads a PEM private key for private_key_jwt: PKCS#8, or
// PKCS#1 (RSA) or SEC 1 (EC); RSA of at least 2048 bits or EC P-256.
func ReadPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, unwrapPath(err))
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ParsePrivateKey parses the first PEM private key block in data; see
// ReadPrivateKey for what is accepted.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	var key any
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM private key (PKCS#8, PKCS#1 or SEC 1) found")
		}
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the private key is encrypted: give an unencrypted key (mount it as a secret file)")
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s block: %w", b.Type, err)
		}
		break
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits: at least 2048 are required", bits)
		}
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("EC key on %s: only P-256 (ES256) is accepted", k.Curve.Params().Name)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("a %T key: only RSA (>= 2048 bits) and EC P-256 are accepted", key)
	}
}
