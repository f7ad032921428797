import Foundation
import Testing

@testable import StreamBusRecords

@Suite struct CRC32CTests {
  struct Vector {
    var name: String
    var input: [UInt8]
    var crc: UInt32
  }

  func vectors() throws -> [Vector] {
    let url = sharedTestDataURL().appendingPathComponent("crc32c-vectors.json")
    let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any]
    let list = try #require(json?["vectors"] as? [[String: Any]])
    return try list.map { entry in
      Vector(
        name: try #require(entry["name"] as? String),
        input: hexBytes(try #require(entry["hex_input"] as? String)),
        crc: UInt32(try #require(entry["crc32c"] as? Int)))
    }
  }

  @Test func softwarePathMatchesVectors() throws {
    let vectors = try vectors()
    #expect(vectors.count >= 6)
    for vector in vectors {
      let crc = vector.input.withUnsafeBytes { CRC32C.checksumSoftware($0) }
      #expect(crc == vector.crc, "\(vector.name)")
    }
  }

  @Test func hardwarePathMatchesVectors() throws {
    guard CRC32C.hasHardwareSupport else {
      print("skipping hardware CRC-32C vectors: CPU has no SSE4.2")
      return
    }
    for vector in try vectors() {
      let crc = vector.input.withUnsafeBytes { CRC32C.checksumHardware($0) }
      #expect(crc == vector.crc, "\(vector.name)")
    }
  }

  @Test func dispatchingPathMatchesVectors() throws {
    for vector in try vectors() {
      #expect(CRC32C.checksum(vector.input) == vector.crc, "\(vector.name)")
    }
  }

  @Test func pathsAgreeOnEveryLengthAndAlignment() {
    var generator = SeededGenerator(state: 7)
    // Lengths around the 3-way hardware blocks (3 x 256 and 3 x 8192 bytes) too.
    let data = randomBytes(60_000 + 64, &generator)
    data.withUnsafeBytes { buffer in
      for start in 0..<9 {
        for length in [
          0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 767, 768, 769, 1000, 1543, 4096, 24_575, 24_576,
          24_577, 25_344, 49_152, 60_000,
        ] {
          let slice = UnsafeRawBufferPointer(rebasing: buffer[start..<start + length])
          let software = CRC32C.checksumSoftware(slice)
          #expect(CRC32C.checksum(slice) == software)
          if CRC32C.hasHardwareSupport {
            #expect(CRC32C.checksumHardware(slice) == software)
          }
        }
      }
    }
  }

  @Test func extendingInPiecesEqualsOneShot() {
    var generator = SeededGenerator(state: 11)
    let data = randomBytes(1000, &generator)
    data.withUnsafeBytes { buffer in
      let whole = CRC32C.checksum(buffer)
      for split in [0, 1, 13, 500, 999, 1000] {
        let first = CRC32C.extend(0, UnsafeRawBufferPointer(rebasing: buffer[..<split]))
        let both = CRC32C.extend(first, UnsafeRawBufferPointer(rebasing: buffer[split...]))
        #expect(both == whole, "split at \(split)")
      }
    }
  }

  @Test func largeBufferThroughput() {
    let data = [UInt8](repeating: 0xA5, count: 64 << 20)
    let clock = ContinuousClock()
    var crc: UInt32 = 0
    let elapsed = clock.measure {
      crc = CRC32C.checksum(data)
    }
    let seconds =
      Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    print(
      "CRC-32C over 64 MiB: \(String(format: "%.2f", 64.0 / 1024 / seconds)) GiB/s, hardware \(CRC32C.hasHardwareSupport)"
    )
    #expect(crc == data.withUnsafeBytes { CRC32C.checksumSoftware($0) })
  }
}
