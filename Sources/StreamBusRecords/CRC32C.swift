import CStreamBusCRC32C

/// CRC-32C (Castagnoli), the checksum of Kafka v2 record batches.
///
/// `checksum` uses the SSE4.2 instruction when the CPU has it; the `software` and
/// `hardware` variants exist so tests can check both paths against known vectors.
public enum CRC32C {
  /// True when the CPU runs the hardware path.
  public static var hasHardwareSupport: Bool { streambus_crc32c_has_hardware() }

  /// Extends `crc` (0 to start) over `bytes`.
  @inlinable
  public static func extend(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
    guard let base = bytes.baseAddress, !bytes.isEmpty else { return crc }
    return streambus_crc32c_extend(crc, base, bytes.count)
  }

  /// The CRC-32C of `bytes`.
  @inlinable
  public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    extend(0, bytes)
  }

  /// The CRC-32C of `bytes`.
  @inlinable
  public static func checksum(_ bytes: [UInt8]) -> UInt32 {
    bytes.withUnsafeBytes { extend(0, $0) }
  }

  /// The software (slice-by-8) path, whatever the CPU.
  public static func checksumSoftware(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    guard let base = bytes.baseAddress, !bytes.isEmpty else { return 0 }
    return streambus_crc32c_extend_software(0, base, bytes.count)
  }

  /// The hardware path, or nil when the CPU lacks SSE4.2.
  public static func checksumHardware(_ bytes: UnsafeRawBufferPointer) -> UInt32? {
    guard hasHardwareSupport else { return nil }
    guard let base = bytes.baseAddress, !bytes.isEmpty else { return 0 }
    return streambus_crc32c_extend_hardware(0, base, bytes.count)
  }
}
