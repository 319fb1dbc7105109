//! The glibc floor the README states: the kstrap binary asks for no glibc symbol version newer
//! than `GLIBC_FLOOR`. Read from the binary this test run built (the one `cargo test` and CI
//! build), by walking its ELF `.gnu.version_r` section (the version needs the dynamic loader
//! checks at start: a machine with an older glibc refuses to run the binary with
//! "version `GLIBC_2.xx' not found").

/// The oldest glibc kstrap runs on (Ubuntu 22.04 ships 2.35, Debian 12 ships 2.36, RHEL 9 2.34).
/// Keep in step with the README ("Install") and scripts/release.sh.
const GLIBC_FLOOR: (u32, u32) = (2, 34);

/// Every `GLIBC_x.y` version the ELF file needs, as (x, y); `None` if it is not a 64-bit
/// little-endian ELF file (the only kind kstrap is released as).
fn glibc_versions(elf: &[u8]) -> Option<Vec<(u32, u32)>> {
    let u16_at = |o: usize| -> Option<u16> { Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?)) };
    let u32_at = |o: usize| -> Option<u32> { Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?)) };
    let u64_at =
        |o: usize| -> Option<usize> { usize::try_from(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?)).ok() };
    // e_ident: magic, ELFCLASS64 (2), ELFDATA2LSB (1).
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = u64_at(0x28)?;
    let shentsize = usize::from(u16_at(0x3A)?);
    let shnum = usize::from(u16_at(0x3C)?);
    let section = |i: usize| shoff + i * shentsize;
    const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
    let mut versions = Vec::new();
    for i in 0..shnum {
        let sh = section(i);
        if u32_at(sh + 4)? != SHT_GNU_VERNEED {
            continue;
        }
        let offset = u64_at(sh + 24)?;
        let strtab = u64_at(section(u32_at(sh + 40)? as usize) + 24)?;
        let count = u32_at(sh + 44)?; // sh_info: number of Verneed entries
        let mut need = offset;
        for _ in 0..count {
            // Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32.
            let aux_count = u16_at(need + 2)?;
            let mut aux = need + u32_at(need + 8)? as usize;
            for _ in 0..aux_count {
                // Vernaux: vna_hash u32, vna_flags u16, vna_other u16, vna_name u32, vna_next u32.
                let name_at = strtab + u32_at(aux + 8)? as usize;
                let end = elf.get(name_at..)?.iter().position(|&b| b == 0)?;
                let name = std::str::from_utf8(&elf[name_at..name_at + end]).ok()?;
                if let Some((major, minor)) = name.strip_prefix("GLIBC_").and_then(|v| v.split_once('.')) {
                    let minor = minor.split('.').next().unwrap_or(minor);
                    if let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) {
                        versions.push((major, minor));
                    }
                }
                aux += u32_at(aux + 12)? as usize;
            }
            need += u32_at(need + 12)? as usize;
        }
    }
    versions.sort_unstable();
    versions.dedup();
    Some(versions)
}

#[test]
fn the_binary_needs_no_glibc_newer_than_the_stated_floor() {
    let path = assert_cmd::cargo::cargo_bin("kstrap");
    let elf = std::fs::read(&path).unwrap();
    let Some(versions) = glibc_versions(&elf) else {
        eprintln!("skipped: {} is not a 64-bit little-endian ELF binary", path.display());
        return;
    };
    if versions.is_empty() {
        eprintln!("skipped: {} needs no glibc (static or musl build)", path.display());
        return;
    }
    // The walk found real versions (any dynamically linked Rust binary needs GLIBC_2.2.5 or 2.17).
    assert!(versions.iter().any(|&(major, _)| major == 2), "{versions:?}");
    let newest = versions.iter().copied().max().unwrap();
    assert!(
        newest <= GLIBC_FLOOR,
        "{} needs GLIBC_{}.{}, newer than the stated floor GLIBC_{}.{}: build on an older system \
         (or raise the floor in README, scripts/release.sh and this test)",
        path.display(),
        newest.0,
        newest.1,
        GLIBC_FLOOR.0,
        GLIBC_FLOOR.1
    );
}

/// The walk itself can fail: a binary that needs a newer glibc is caught. This builds the
/// smallest ELF with one Verneed entry naming GLIBC_2.38 and GLIBC_2.17.
#[test]
fn the_glibc_walk_reads_version_needs() {
    let mut elf = vec![0u8; 0x40];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    // .dynstr at 0x40
    let strtab_off = elf.len();
    elf.extend_from_slice(b"\0libc.so.6\0GLIBC_2.38\0GLIBC_2.17\0");
    // .gnu.version_r at verneed_off: one Verneed, two Vernaux
    let verneed_off = elf.len();
    let push16 = |e: &mut Vec<u8>, v: u16| e.extend_from_slice(&v.to_le_bytes());
    push16(&mut elf, 1);
    push16(&mut elf, 2);
    elf.extend_from_slice(&1u32.to_le_bytes()); // vn_file
    elf.extend_from_slice(&16u32.to_le_bytes()); // vn_aux
    elf.extend_from_slice(&0u32.to_le_bytes()); // vn_next
    for (name, next) in [(11u32, 16u32), (22, 0)] {
        elf.extend_from_slice(&0u32.to_le_bytes());
        push16(&mut elf, 0);
        push16(&mut elf, 0);
        elf.extend_from_slice(&name.to_le_bytes());
        elf.extend_from_slice(&next.to_le_bytes());
    }
    // Section headers: [0] null, [1] .dynstr, [2] .gnu.version_r
    let shoff = elf.len();
    let header = |e: &mut Vec<u8>, kind: u32, offset: usize, link: u32, info: u32| {
        let mut h = vec![0u8; 64];
        h[4..8].copy_from_slice(&kind.to_le_bytes());
        h[24..32].copy_from_slice(&(offset as u64).to_le_bytes());
        h[40..44].copy_from_slice(&link.to_le_bytes());
        h[44..48].copy_from_slice(&info.to_le_bytes());
        e.extend_from_slice(&h);
    };
    header(&mut elf, 0, 0, 0, 0);
    header(&mut elf, 3, strtab_off, 0, 0);
    header(&mut elf, 0x6fff_fffe, verneed_off, 1, 1);
    elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    elf[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
    elf[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
    assert_eq!(glibc_versions(&elf), Some(vec![(2, 17), (2, 38)]));
    assert!(glibc_versions(&elf).unwrap().into_iter().max().unwrap() > GLIBC_FLOOR);
    assert_eq!(glibc_versions(b"MZ not an elf"), None);
}
