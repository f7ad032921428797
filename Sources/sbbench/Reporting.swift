import Foundation
import Histogram

/// Latencies in microseconds, 3 significant digits, up to 60 s.
struct LatencyRecorder: Sendable {
  static let highestTrackableMicroseconds: UInt64 = 60_000_000
  private(set) var histogram = Histogram<UInt64>(
    lowestDiscernibleValue: 1, highestTrackableValue: highestTrackableMicroseconds,
    numberOfSignificantValueDigits: .three)

  mutating func record(_ duration: Duration) {
    let microseconds = max(1, duration.microseconds)
    _ = histogram.record(min(UInt64(microseconds), Self.highestTrackableMicroseconds))
  }

  mutating func add(_ other: LatencyRecorder) {
    histogram.add(other.histogram)
  }

  var count: UInt64 { histogram.totalCount }

  /// p50/p99/p99.9/max in milliseconds, nil when nothing was recorded.
  var summary: LatencySummary? {
    guard histogram.totalCount > 0 else { return nil }
    func milliseconds(_ percentile: Double) -> Double {
      Double(histogram.valueAtPercentile(percentile)) / 1000
    }
    return LatencySummary(
      p50Ms: milliseconds(50), p99Ms: milliseconds(99), p999Ms: milliseconds(99.9),
      maxMs: Double(histogram.max) / 1000, meanMs: histogram.mean / 1000,
      samples: histogram.totalCount)
  }
}

extension Duration {
  var microseconds: Int64 {
    let (seconds, attoseconds) = components
    return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
  }

  var secondsDouble: Double {
    let (seconds, attoseconds) = components
    return Double(seconds) + Double(attoseconds) / 1e18
  }
}

struct LatencySummary: Codable, Sendable {
  var p50Ms: Double
  var p99Ms: Double
  var p999Ms: Double
  var maxMs: Double
  var meanMs: Double
  var samples: UInt64
}

/// One benchmark result; printed as one JSON line with `--output json`.
struct BenchResult: Codable, Sendable {
  var benchmark: String
  var parameters: [String: String]
  var elapsedSeconds: Double
  var records: Int?
  var bytes: Int?
  var recordsPerSecond: Double?
  var mbPerSecond: Double?
  var opsPerSecond: Double?
  var latency: LatencySummary?
  var errors: Int?
  var notes: String?

  init(benchmark: String, parameters: [String: String], elapsedSeconds: Double) {
    self.benchmark = benchmark
    self.parameters = parameters
    self.elapsedSeconds = elapsedSeconds
  }

  func print(format: OutputFormat) {
    switch format {
    case .json:
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
      guard let data = try? encoder.encode(self) else { return }
      Swift.print(String(decoding: data, as: UTF8.self))
    case .text:
      Swift.print(textSummary)
    }
  }

  var textSummary: String {
    var lines: [String] = []
    let parameterText = parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
      .joined(separator: " ")
    lines.append("\(benchmark) [\(parameterText)]")
    var figures: [String] = [String(format: "elapsed %.2f s", elapsedSeconds)]
    if let records { figures.append("\(records) records") }
    if let recordsPerSecond { figures.append(String(format: "%.0f records/s", recordsPerSecond)) }
    if let mbPerSecond { figures.append(String(format: "%.1f MB/s", mbPerSecond)) }
    if let opsPerSecond { figures.append(String(format: "%.0f ops/s", opsPerSecond)) }
    if let errors, errors > 0 { figures.append("\(errors) errors") }
    lines.append("  " + figures.joined(separator: ", "))
    if let latency {
      lines.append(
        String(
          format: "  latency p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms (%llu samples)",
          latency.p50Ms, latency.p99Ms, latency.p999Ms, latency.maxMs, latency.samples))
    }
    if let notes { lines.append("  \(notes)") }
    return lines.joined(separator: "\n")
  }
}

/// Decimal megabytes, as disk and network vendors (and redis-xadd.sh) count them.
func megabytesPerSecond(bytes: Int, seconds: Double) -> Double {
  seconds > 0 ? Double(bytes) / 1e6 / seconds : 0
}

func rounded(_ value: Double, places: Int = 1) -> Double {
  let scale = pow(10, Double(places))
  return (value * scale).rounded() / scale
}
