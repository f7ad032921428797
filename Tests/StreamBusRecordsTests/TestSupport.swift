import Foundation
import Testing

@testable import StreamBusRecords

/// The shared external test data, copied into `Tests/Fixtures/external` (see its README),
/// found from this file's path.
func sharedTestDataURL() -> URL {
  URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // StreamBusRecordsTests
    .deletingLastPathComponent()  // Tests
    .appendingPathComponent("Fixtures/external")
}

func hexBytes(_ hex: String) -> [UInt8] {
  var bytes: [UInt8] = []
  var index = hex.startIndex
  while index < hex.endIndex {
    let next = hex.index(index, offsetBy: 2)
    bytes.append(UInt8(hex[index..<next], radix: 16) ?? 0)
    index = next
  }
  return bytes
}

/// Recomputes the CRC of a batch after a test edited bytes inside the covered range, so the
/// decoder gets past the CRC check to the field under test.
func resealCRC(_ bytes: inout [UInt8]) {
  let crc = bytes.withUnsafeBytes {
    CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[RecordBatchHeader.crcCoveredStart...]))
  }
  bytes.withUnsafeMutableBytes {
    $0.storeBytes(of: crc.bigEndian, toByteOffset: 17, as: UInt32.self)
  }
}

/// Deterministic pseudo-random bytes (SplitMix64), so failures reproduce.
struct SeededGenerator: RandomNumberGenerator {
  var state: UInt64
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var value = state
    value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
    value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
    return value ^ (value >> 31)
  }
}

func randomBytes(_ count: Int, _ generator: inout SeededGenerator) -> [UInt8] {
  (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
}

func sampleBatch(baseOffset: Int64 = 0, records count: Int = 3) -> [UInt8] {
  var builder = RecordBatchBuilder(baseOffset: baseOffset)
  for index in 0..<count {
    builder.append(
      key: Array("key-\(index)".utf8), value: Array("value-\(index)".utf8),
      headers: [RecordHeader(key: "h", value: [UInt8(index)])], timestamp: 1_000 + Int64(index))
  }
  return builder.build()
}
