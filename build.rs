//! Build script: where the firmware is linked, per board. `link.ld` (aarch64) starts the
//! image at `__kernel_base`, which this defines: QEMU `virt` wants the ELF above the DTB
//! it places at 0x4000_0000; a Raspberry Pi's firmware loads `kernel8.img` at 0x8_0000.
//! `link-x86_64.ld` fixes its own address (16 MiB) and needs nothing from here; both
//! scripts are watched so that editing one relinks the firmware.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=link-x86_64.ld");
    let var = |k: &str| env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "none" || var("CARGO_CFG_TARGET_ARCH") != "aarch64" {
        return;
    }
    let pi = ["CARGO_FEATURE_RPI3", "CARGO_FEATURE_RPI4"]
        .iter()
        .any(|f| env::var_os(f).is_some());
    let base = if pi { "0x80000" } else { "0x40200000" };
    println!("cargo:rustc-link-arg-bins=--defsym=__kernel_base={base}");
}
