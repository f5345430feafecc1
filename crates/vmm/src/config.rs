//! `VmConfig`: what a user asks for, validated once before any KVM object exists.

use std::path::PathBuf;

use crate::layout;

/// The most vCPUs a VM may have (the guest runtime has stacks for this many).
pub const MAX_VCPUS: u32 = guest_kmod_bindings::VMRPC_MAX_VCPUS;

/// Default engine spin before sleeping: long enough to catch a guest's next
/// call in a burst, short enough not to burn a core for idle VMs.
pub const DEFAULT_RPC_SPIN_US: u64 = 50;

/// Invalid configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// vcpus must be between 1 and 8
    #[error("vcpus must be between 1 and {MAX_VCPUS}, got {0}")]
    Vcpus(u32),
    /// memory out of range or not a multiple of 2 MiB
    #[error("memory_mib must be an even number between {min} and {max}, got {got}")]
    Memory { got: u64, min: u64, max: u64 },
    /// arguments do not fit in the boot-info page
    #[error("guest arguments take {0} bytes; at most {1} fit")]
    ArgsTooLarge(usize, usize),
    /// an argument contains a NUL byte
    #[error("guest argument {0} contains a NUL byte")]
    ArgNul(usize),
    /// cpu_limit is not a finite number of host CPUs in range
    #[error(
        "cpu_limit must be a number of host CPUs from {MIN_CPU_LIMIT} to {host_cpus} \
         (this host's), got {got}"
    )]
    CpuLimit { got: String, host_cpus: u32 },
}

/// The smallest CPU budget: 1% of a host CPU, the kernel's 1 ms minimum quota
/// per 100 ms period.
pub const MIN_CPU_LIMIT: f64 = 0.01;

/// Online host CPUs, the upper bound of `cpu_limit`.
pub fn host_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).unwrap_or(1).max(1)
}

/// A CPU budget must be a finite number of host CPUs within what the host has.
pub fn check_cpu_limit(limit: f64, host_cpus: u32) -> Result<(), ConfigError> {
    if limit.is_finite() && limit >= MIN_CPU_LIMIT && limit <= f64::from(host_cpus) {
        return Ok(());
    }
    Err(ConfigError::CpuLimit {
        got: limit.to_string(),
        host_cpus,
    })
}

/// A VM's configuration. Build it, `validate()` it, then hand it to `Vm::new`.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub image: PathBuf,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub args: Vec<String>,
    /// Bytes of console output kept (older output is dropped first).
    pub console_limit: usize,
    /// How long the RPC engine spins on empty rings before it sleeps (µs).
    pub rpc_spin_us: u64,
    /// CPU budget of the VM's vCPU threads together, in host CPUs (0.5: half
    /// of one host CPU), enforced with a cgroup (see `cgroup`). None: no limit.
    pub cpu_limit: Option<f64>,
    /// Start vCPU 0 only, and schedule the Linux personality's threads over
    /// the vCPUs, made when a thread waits for one (`vm::pool`).
    pub vcpus_on_demand: bool,
}

impl VmConfig {
    pub fn new(image: impl Into<PathBuf>) -> Self {
        VmConfig {
            image: image.into(),
            vcpus: 1,
            memory_mib: 64,
            args: Vec::new(),
            console_limit: 1 << 20,
            rpc_spin_us: DEFAULT_RPC_SPIN_US,
            cpu_limit: None,
            vcpus_on_demand: false,
        }
    }

    pub fn mem_size(&self) -> u64 {
        self.memory_mib << 20
    }

    /// The guest's argv: the image's file stem, then the user's arguments.
    pub fn guest_argv(&self) -> Vec<String> {
        let name = self
            .image
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned());
        std::iter::once(name.unwrap_or_default())
            .chain(self.args.iter().cloned())
            .collect()
    }

    /// Checks everything that can be checked without touching KVM or the image.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(ConfigError::Vcpus(self.vcpus));
        }
        let (min, max) = (layout::MIN_MEM_SIZE >> 20, layout::MAX_MEM_SIZE >> 20);
        if self.memory_mib < min || self.memory_mib > max || !self.memory_mib.is_multiple_of(2) {
            return Err(ConfigError::Memory {
                got: self.memory_mib,
                min,
                max,
            });
        }
        if let Some(i) = self.args.iter().position(|a| a.contains('\0')) {
            return Err(ConfigError::ArgNul(i));
        }
        if let Some(limit) = self.cpu_limit {
            check_cpu_limit(limit, host_cpus())?;
        }
        let needed = crate::bootinfo::args_size(&self.guest_argv());
        let room = crate::bootinfo::args_room();
        if needed > room {
            return Err(ConfigError::ArgsTooLarge(needed, room));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_vcpus_and_memory() {
        let mut c = VmConfig::new("x");
        assert!(c.validate().is_ok());
        c.vcpus = 0;
        assert_eq!(c.validate(), Err(ConfigError::Vcpus(0)));
        c.vcpus = MAX_VCPUS + 1;
        assert!(c.validate().is_err());
        c.vcpus = 1;
        c.memory_mib = 3;
        assert!(matches!(c.validate(), Err(ConfigError::Memory { .. })));
        c.memory_mib = 65;
        assert!(matches!(c.validate(), Err(ConfigError::Memory { .. })));
        c.memory_mib = 64;
        c.args = vec!["a\0b".into()];
        assert_eq!(c.validate(), Err(ConfigError::ArgNul(0)));
        c.args = vec!["x".repeat(5000)];
        assert!(matches!(c.validate(), Err(ConfigError::ArgsTooLarge(..))));
    }

    #[test]
    fn cpu_limit_must_be_finite_positive_and_within_the_host() {
        for bad in [
            0.0,
            -0.5,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.009,
            2.01,
        ] {
            assert!(
                matches!(check_cpu_limit(bad, 2), Err(ConfigError::CpuLimit { .. })),
                "{bad} accepted"
            );
        }
        for good in [MIN_CPU_LIMIT, 0.5, 1.0, 2.0] {
            assert_eq!(check_cpu_limit(good, 2), Ok(()));
        }
        let mut c = VmConfig::new("x");
        c.cpu_limit = Some(f64::from(host_cpus()) + 1.0);
        assert!(matches!(c.validate(), Err(ConfigError::CpuLimit { .. })));
        c.cpu_limit = Some(0.5);
        assert_eq!(c.validate(), Ok(()));
    }
}
