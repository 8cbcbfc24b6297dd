//! The on-disk cache: the account's credentials and each host's
//! certificate, so that a restart reuses them instead of ordering anew.
//!
//! Each ACME directory has a folder of its own (an account and its
//! certificates belong to one authority, and switching from a staging
//! directory to production must not reuse either). Files hold private
//! keys: the folders are 0700 and the files 0600, written whole to a
//! temporary name and renamed, so a crash never leaves half a key. The
//! files are small and read or written a few times a day: plain blocking
//! calls, not a thread of their own.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use super::AcmeError;

/// The account's credentials, in each directory's folder.
const ACCOUNT_FILE: &str = "account.json";

/// One ACME directory's folder in the cache.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The folder for `directory_url` under `root`, created if missing.
    pub fn open(root: &Path, directory_url: &str) -> Result<Cache, AcmeError> {
        let dir = root.join(folder_name(directory_url));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(AcmeError::cache(&dir))?;
        Ok(Cache { dir })
    }

    /// The account's credentials (JSON), if stored.
    pub fn account(&self) -> Result<Option<String>, AcmeError> {
        self.read(&self.dir.join(ACCOUNT_FILE))
    }

    /// Stores the account's credentials.
    pub fn store_account(&self, json: &str) -> Result<(), AcmeError> {
        self.write(ACCOUNT_FILE, json)
    }

    /// The PEM text (chain, then key) stored for `host`, if any.
    pub fn certificate(&self, host: &str) -> Result<Option<String>, AcmeError> {
        self.read(&self.cert_path(host))
    }

    /// Stores `pem` for `host`.
    pub fn store_certificate(&self, host: &str, pem: &str) -> Result<(), AcmeError> {
        self.write(&cert_file(host), pem)
    }

    /// Where `host`'s certificate is kept.
    pub fn cert_path(&self, host: &str) -> PathBuf {
        self.dir.join(cert_file(host))
    }

    fn read(&self, path: &Path) -> Result<Option<String>, AcmeError> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AcmeError::cache(path)(e)),
        }
    }

    fn write(&self, name: &str, text: &str) -> Result<(), AcmeError> {
        let path = self.dir.join(name);
        let partial = self.dir.join(format!(".{name}.partial"));
        let written = (|| {
            let _ = fs::remove_file(&partial);
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&partial, &path)
        })();
        written.map_err(AcmeError::cache(&path))
    }
}

/// A host's file: host names are letters, digits, `-`, `_` and dots
/// between labels (checked where they are configured), so the name is a
/// plain file name.
fn cert_file(host: &str) -> String {
    format!("{host}.pem")
}

/// A folder name for a directory URL: its letters and digits, with `_`
/// for the rest (`https://acme-v02.api.letsencrypt.org/directory` becomes
/// `acme-v02.api.letsencrypt.org_directory`).
fn folder_name(directory_url: &str) -> String {
    let rest = directory_url
        .strip_prefix("https://")
        .unwrap_or(directory_url);
    rest.trim_end_matches('/')
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn folders_differ_by_directory_and_files_are_the_owners_alone() {
        assert_eq!(
            folder_name("https://acme-v02.api.letsencrypt.org/directory"),
            "acme-v02.api.letsencrypt.org_directory"
        );
        assert_eq!(
            folder_name("https://127.0.0.1:14000/dir"),
            "127.0.0.1_14000_dir"
        );
        let root = std::env::temp_dir().join(format!("acme-cache-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let cache = Cache::open(&root, "https://ca.test/dir").unwrap();
        assert_eq!(cache.certificate("a.test").unwrap(), None);
        cache.store_certificate("a.test", "one").unwrap();
        cache.store_certificate("a.test", "two").unwrap();
        assert_eq!(cache.certificate("a.test").unwrap().as_deref(), Some("two"));
        cache.store_account("{}").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache.cert_path("a.test")), 0o600);
        assert_eq!(mode(&cache.dir.join(ACCOUNT_FILE)), 0o600);
        assert_eq!(mode(&cache.dir), 0o700);
        let _ = fs::remove_dir_all(&root);
    }
}
