//! A per-VM CPU budget enforced by the kernel: a cgroup holding only the VM's
//! vCPU threads, with CPU bandwidth control (CFS quota per period).
//!
//! Why a cgroup per VM and only vCPU threads: a guest that spins on all its
//! vCPUs otherwise takes every host core, and the host's own threads (the RPC
//! engines, Python) must stay outside the budget so that a limited VM never
//! slows the host side of other VMs.
//!
//! Both hierarchies are supported:
//! - cgroup v1, `cpu` controller: `cpu.cfs_quota_us` / `cpu.cfs_period_us`, and
//!   threads are moved one by one through `tasks`;
//! - cgroup v2: a *threaded* child (`cgroup.type`), `cpu.max`, `cgroup.threads`,
//!   with `+cpu` in the parent's `cgroup.subtree_control`.
//!
//! The VM's cgroup is made under the cgroup this process is in (so it works
//! inside a container that delegates its subtree) and removed when the VM is
//! dropped, after its vCPU threads have been joined.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Shortest CFS period used. A short period keeps a limited VM's bursts short
/// (it runs at most its quota, then waits for the next period), so other VMs
/// wait less for a core; below ~10 ms the accounting overhead grows.
pub const MIN_PERIOD_US: u64 = 10_000;
/// Longest CFS period: the kernel's default.
pub const MAX_PERIOD_US: u64 = 100_000;
/// The kernel refuses quotas below 1 ms.
pub const MIN_QUOTA_US: u64 = 1_000;
/// Test hook: `v1:/dir` or `v2:/dir` names the directory VM cgroups are made in,
/// instead of the one found from /proc/self/mountinfo and /proc/self/cgroup.
pub const PARENT_ENV: &str = "VMRPC_CGROUP_PARENT";

/// Why the CPU limit could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Neither a cgroup v2 hierarchy with the `cpu` controller nor a v1 `cpu`
    /// hierarchy is mounted for this process.
    #[error(
        "cpu_limit needs cgroup CPU bandwidth control, but no usable cgroup hierarchy was \
         found: {0}"
    )]
    NoController(String),
    /// `VMRPC_CGROUP_PARENT` is not `v1:/dir` or `v2:/dir`.
    #[error("{PARENT_ENV} must be v1:/dir or v2:/dir, got {0:?}")]
    BadOverride(String),
    /// A cgroup file or directory could not be created, written or removed.
    #[error(
        "cpu_limit: cannot {what} {path}: {source} (VM cgroups need root or a delegated, \
         writable cgroup hierarchy)"
    )]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Which interface the hierarchy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Where VM cgroups are made, and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub version: Version,
    pub dir: PathBuf,
}

impl Parent {
    /// The test hook if set, otherwise this process's own cgroup (v2 preferred
    /// when its `cpu` controller is available, else v1).
    pub fn find() -> Result<Parent, CgroupError> {
        if let Some(spec) = std::env::var_os(PARENT_ENV) {
            return parse_override(&spec.to_string_lossy());
        }
        let mountinfo = read("read", Path::new("/proc/self/mountinfo"))?;
        let cgroups = read("read", Path::new("/proc/self/cgroup"))?;
        let v2 = find_v2(&mountinfo, &cgroups).filter(|p| v2_has_cpu(&p.dir));
        v2.or_else(|| find_v1(&mountinfo, &cgroups)).ok_or_else(|| {
            CgroupError::NoController(
                "no cgroup v2 with the cpu controller enabled and no cgroup v1 cpu hierarchy \
                 in /proc/self/mountinfo"
                    .into(),
            )
        })
    }
}

fn parse_override(spec: &str) -> Result<Parent, CgroupError> {
    let (version, dir) = match spec.split_once(':') {
        Some(("v1", dir)) => (Version::V1, dir),
        Some(("v2", dir)) => (Version::V2, dir),
        _ => return Err(CgroupError::BadOverride(spec.into())),
    };
    if !dir.starts_with('/') {
        return Err(CgroupError::BadOverride(spec.into()));
    }
    Ok(Parent {
        version,
        dir: dir.into(),
    })
}

/// The mount point and mount root of the first mount `pick` accepts, given its
/// filesystem type and super options (/proc/self/mountinfo, see proc(5)).
fn find_mount(mountinfo: &str, pick: impl Fn(&str, &str) -> bool) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (root, mount_point) = (*left.get(3)?, *left.get(4)?);
        let (fstype, options) = (*right.first()?, *right.get(2)?);
        pick(fstype, options).then(|| (PathBuf::from(unescape(mount_point)), unescape(root)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `mount point + (own cgroup path relative to the mount's root)`.
fn own_dir(mount: (PathBuf, String), own: &str) -> PathBuf {
    let (point, root) = mount;
    let rel = if root == "/" {
        own
    } else {
        own.strip_prefix(root.as_str()).unwrap_or(own)
    };
    point.join(rel.trim_start_matches('/'))
}

fn find_v2(mountinfo: &str, cgroups: &str) -> Option<Parent> {
    let own = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mount = find_mount(mountinfo, |fstype, _| fstype == "cgroup2")?;
    Some(Parent {
        version: Version::V2,
        dir: own_dir(mount, own),
    })
}

fn find_v1(mountinfo: &str, cgroups: &str) -> Option<Parent> {
    let has_cpu = |list: &str| list.split(',').any(|c| c == "cpu");
    // /proc/self/cgroup lines: "ID:controller,list:/path".
    let own = cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        has_cpu(controllers).then_some(path)
    })?;
    let mount = find_mount(mountinfo, |fstype, options| {
        fstype == "cgroup" && has_cpu(options)
    })?;
    Some(Parent {
        version: Version::V1,
        dir: own_dir(mount, own),
    })
}

fn v2_has_cpu(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.controllers"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"))
}

fn read(what: &'static str, path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Io {
        what,
        path: path.into(),
        source,
    })
}

fn write(what: &'static str, path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Io {
        what,
        path: path.into(),
        source,
    })
}

/// (quota, period) in µs for `limit` host CPUs: the shortest period in which
/// the quota is still at least the kernel's minimum.
pub fn bandwidth_us(limit: f64) -> (u64, u64) {
    let period = ((MIN_QUOTA_US as f64 / limit).ceil() as u64).clamp(MIN_PERIOD_US, MAX_PERIOD_US);
    let quota = ((limit * period as f64).round() as u64).max(MIN_QUOTA_US);
    (quota, period)
}

/// One VM's cgroup. Removed on drop; by then its threads must have exited.
#[derive(Debug)]
pub struct VmCgroup {
    version: Version,
    dir: PathBuf,
}

impl VmCgroup {
    /// Makes the VM's cgroup under `parent` with a budget of `limit` host CPUs.
    pub fn create(parent: &Parent, limit: f64) -> Result<VmCgroup, CgroupError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "vmrpc-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = parent.dir.join(name);
        fs::create_dir(&dir).map_err(|source| CgroupError::Io {
            what: "create the VM's cgroup",
            path: dir.clone(),
            source,
        })?;
        // From here on, drop removes the directory if a later step fails.
        let cgroup = VmCgroup {
            version: parent.version,
            dir,
        };
        let (quota, period) = bandwidth_us(limit);
        match parent.version {
            Version::V1 => {
                write(
                    "set the CFS period",
                    &cgroup.dir.join("cpu.cfs_period_us"),
                    &period.to_string(),
                )?;
                write(
                    "set the CFS quota",
                    &cgroup.dir.join("cpu.cfs_quota_us"),
                    &quota.to_string(),
                )?;
            }
            Version::V2 => {
                // A threaded child lets single threads of this process join it;
                // the parent becomes a threaded domain.
                write("make threaded", &cgroup.dir.join("cgroup.type"), "threaded")?;
                let control = parent.dir.join("cgroup.subtree_control");
                if !read("read", &control)?
                    .split_whitespace()
                    .any(|c| c == "cpu")
                {
                    write("enable the cpu controller in", &control, "+cpu")?;
                }
                write(
                    "set cpu.max",
                    &cgroup.dir.join("cpu.max"),
                    &format!("{quota} {period}"),
                )?;
            }
        }
        Ok(cgroup)
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn threads_file(&self) -> PathBuf {
        self.dir.join(match self.version {
            Version::V1 => "tasks",
            Version::V2 => "cgroup.threads",
        })
    }

    /// Moves the calling thread (only it, not its process) into the cgroup.
    pub fn enter_current_thread(&self) -> Result<(), CgroupError> {
        // SAFETY: gettid has no preconditions and cannot fail.
        let tid = unsafe { libc::gettid() };
        write(
            "move a vCPU thread into",
            &self.threads_file(),
            &tid.to_string(),
        )
    }
}

/// How long removal waits for exited threads to leave the cgroup.
const REMOVE_TRIES: u32 = 200;
const REMOVE_RETRY: std::time::Duration = std::time::Duration::from_millis(1);

impl Drop for VmCgroup {
    fn drop(&mut self) {
        // A joined thread may still be listed for a moment: the kernel wakes the
        // joiner before it unlinks the exiting thread from its cgroup (EBUSY).
        for _ in 0..REMOVE_TRIES {
            match fs::remove_dir(&self.dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(REMOVE_RETRY),
                Err(e) => {
                    log::error!("cannot remove the VM's cgroup {}: {e}", self.dir.display());
                    return;
                }
                Ok(()) => return,
            }
        }
        log::error!("the VM's cgroup {} stayed busy", self.dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 25 0:32 /ctr /sys/fs/cgroup/my\\040unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_own_cgroup_in_each_hierarchy() {
        let cgroups = "2:cpuacct:/\n1:cpu:/a/b\n0::/ctr/x\n";
        assert_eq!(
            find_v1(MOUNTINFO, cgroups),
            Some(Parent {
                version: Version::V1,
                dir: "/sys/fs/cgroup/cpu/a/b".into()
            })
        );
        // The v2 mount's root is /ctr (a container): the own path is relative to it.
        assert_eq!(
            find_v2(MOUNTINFO, cgroups),
            Some(Parent {
                version: Version::V2,
                dir: "/sys/fs/cgroup/my unified/x".into()
            })
        );
        // cpu co-mounted with cpuacct.
        let joint = "26 25 0:23 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let found = find_v1(joint, "4:cpu,cpuacct:/\n").map(|p| p.dir);
        assert_eq!(found, Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")));
        // No cpu hierarchy at all.
        assert_eq!(find_v1("", "0::/\n"), None);
        assert_eq!(find_v2(MOUNTINFO, "1:cpu:/\n"), None);
    }

    #[test]
    fn override_is_checked() {
        assert_eq!(
            parse_override("v2:/x").unwrap(),
            Parent {
                version: Version::V2,
                dir: "/x".into()
            }
        );
        for bad in ["v3:/x", "/x", "v1:rel", ""] {
            assert!(matches!(
                parse_override(bad),
                Err(CgroupError::BadOverride(_))
            ));
        }
    }

    #[test]
    fn bandwidth_is_the_limit_over_the_shortest_period_with_a_legal_quota() {
        assert_eq!(bandwidth_us(0.5), (5_000, 10_000));
        assert_eq!(bandwidth_us(2.0), (20_000, 10_000));
        assert_eq!(bandwidth_us(0.05), (1_000, 20_000));
        assert_eq!(bandwidth_us(0.01), (1_000, 100_000));
        assert_eq!(bandwidth_us(0.001), (MIN_QUOTA_US, MAX_PERIOD_US));
    }

    /// A plain directory stands in for cgroupfs: the files the code writes are
    /// checked, and the directory is removed on drop.
    #[test]
    fn v2_writes_threaded_type_controller_and_cpu_max() {
        let parent = std::env::temp_dir().join(format!("vmrpc-cg-test-{}", std::process::id()));
        fs::create_dir_all(&parent).unwrap();
        fs::write(parent.join("cgroup.subtree_control"), "memory\n").unwrap();
        let p = Parent {
            version: Version::V2,
            dir: parent.clone(),
        };
        let cg = VmCgroup::create(&p, 0.25).unwrap();
        let file = |n: &str| fs::read_to_string(cg.path().join(n)).unwrap();
        assert_eq!(file("cgroup.type"), "threaded");
        assert_eq!(file("cpu.max"), "2500 10000");
        let control = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap();
        assert_eq!(control, "+cpu");
        cg.enter_current_thread().unwrap();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        assert_eq!(file("cgroup.threads"), tid.to_string());
        // A real cgroup directory has no files of its own to remove; the fake one does.
        for f in ["cgroup.type", "cpu.max", "cgroup.threads"] {
            fs::remove_file(cg.path().join(f)).unwrap();
        }
        let dir = cg.path().to_owned();
        drop(cg);
        assert!(!dir.exists());
        fs::remove_dir_all(&parent).unwrap();
    }

    #[test]
    fn unwritable_parent_is_a_clear_error() {
        // /proc refuses mkdir even for root.
        let p = Parent {
            version: Version::V1,
            dir: "/proc".into(),
        };
        let e = VmCgroup::create(&p, 0.5).unwrap_err();
        assert!(matches!(e, CgroupError::Io { .. }), "{e}");
        assert!(e.to_string().contains("/proc/vmrpc-"), "{e}");
    }
}
