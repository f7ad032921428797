import ArgumentParser
import Foundation
import StreamBusTestSupport

/// The broker a benchmark runs against: given with --brokers, or spawned for the run.
struct BrokerTarget {
  let address: String
  /// Where the spawned broker keeps its data (nil for --brokers).
  let dataDirectory: URL?

  /// Runs `body` against the broker, spawning (and always killing) one if asked to.
  static func with<Result>(
    _ options: BrokerOptions, body: (BrokerTarget) async throws -> Result
  ) async throws -> Result {
    if let brokers = options.brokers {
      guard let first = brokers.split(separator: ",").first.map(String.init), !first.isEmpty
      else { throw ValidationError("--brokers is empty") }
      return try await body(BrokerTarget(address: first, dataDirectory: nil))
    }
    let configuration: BuildConfiguration =
      options.spawnConfiguration == "debug" ? .debug : .release
    let parent = URL(fileURLWithPath: options.workDir, isDirectory: true).standardizedFileURL
    return try await ProcessHarness.withHarness(
      "sbbench", configuration: configuration, parentDirectory: parent, watchdogSeconds: nil
    ) { harness in
      let broker = try await harness.startBroker()
      return try await body(
        BrokerTarget(address: broker.address, dataDirectory: broker.dataDirectory))
    }
  }
}

func uniqueTopicName(prefix: String) -> String {
  "\(prefix)-\(UInt32.random(in: 0...UInt32.max))"
}

/// A record value of the given size, deterministic and not all one byte (so nothing along the
/// path gets an unrealistically easy time).
func recordValue(bytes: Int, seed: Int) -> [UInt8] {
  var value = [UInt8](repeating: 0, count: bytes)
  var state = UInt64(truncatingIfNeeded: seed) &* 0x9E37_79B9_7F4A_7C15 | 1
  for index in value.indices {
    state ^= state << 13
    state ^= state >> 7
    state ^= state << 17
    value[index] = UInt8(truncatingIfNeeded: state)
  }
  return value
}
