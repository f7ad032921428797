import Foundation
import StreamBusTestSupport
import Testing

/// Settings shared by the chaos scenarios.
enum ChaosSettings {
  /// `CHAOS_LONG=1`: longer fault durations and more iterations.
  static var isLong: Bool { ProcessInfo.processInfo.environment["CHAOS_LONG"] == "1" }

  /// `short` normally, `long` under CHAOS_LONG=1.
  static func pick<Value>(short: Value, long: Value) -> Value { isLong ? long : short }

  static func seconds(_ milliseconds: Int64) -> String {
    String(format: "%.3f s", Double(milliseconds) / 1_000)
  }
}

extension Trait where Self == ConditionTrait {
  /// Runs the test only where `NetworkLab` works (root, ip netns, iptables, tc); otherwise the
  /// test is reported skipped with the reason, and the reason is printed to stderr too, so
  /// a run without root cannot look like a passing chaos suite.
  static var requiresNetworkLab: Self {
    .enabled(
      if: checkNetworkLab(),
      Comment(
        rawValue: "NetworkLab unavailable: \(NetworkLab.unavailableReason ?? "available")"))
  }
}

private func checkNetworkLab() -> Bool {
  if let reason = NetworkLab.unavailableReason {
    let message =
      "\n*** CHAOS TEST SKIPPED: NetworkLab unavailable: \(reason). "
      + "Run the chaos suite as root with iproute2, iptables and tc installed. ***\n"
    FileHandle.standardError.write(Data(message.utf8))
    return false
  }
  return true
}

/// Parent of the network lab tests and the network-fault scenarios: they run one at a time
/// even when `swift test` runs suites in parallel (each starts 7 processes and measures
/// timing on a small machine).
@Suite(.serialized) struct NetworkChaosTests {}
