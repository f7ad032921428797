import Foundation

/// What a failover drill prints: verdict, reasons, target, timeline, unavailability and the
/// workload's report.
struct DrillResult {
  var drill: String
  /// Why the verdict is FAIL (empty on PASS).
  var reasons: [String]
  var mode: String
  var target: DrillTarget?
  var topic: String
  var partition: Int32
  var timeline: [DrillTimeline.Event]
  /// The write gap around the fault: from the last success before the first success after
  /// the fault to that success (acknowledgements of the partition, or metadata writes).
  var unavailabilityMs: Int64?
  var workload: DrillWorkloadReport
  var originMs: Int64

  var isPass: Bool { reasons.isEmpty && workload.isPass }

  func json() -> JSONValue {
    let targetJSON: JSONValue =
      target.map { target in
        .object([
          ("role", .string(target.role)), ("id", .integer(Int64(target.id))),
          ("address", target.address.map(JSONValue.string) ?? .null),
          ("pid", target.pid.map { .integer(Int64($0)) } ?? .null),
        ])
      } ?? .null
    return .object([
      ("drill", .string(drill)), ("verdict", .string(isPass ? "PASS" : "FAIL")),
      ("reasons", .array(reasons.map(JSONValue.string))), ("mode", .string(mode)),
      ("topic", .string(topic)), ("partition", .integer(Int64(partition))),
      ("target", targetJSON),
      (
        "timeline",
        .array(
          timeline.map { .object([("atMs", .integer($0.atMs)), ("event", .string($0.text))]) })
      ),
      ("unavailabilityMs", unavailabilityMs.map(JSONValue.integer) ?? .null),
      ("workload", workload.json()),
    ])
  }

  func textLines() -> [String] {
    var lines = ["drill \(drill) (\(mode) mode): \(isPass ? "PASS" : "FAIL")"]
    if let target {
      lines.append(
        "target: \(target.name)" + (target.address.map { " at \($0)" } ?? "")
          + (target.pid.map { ", pid \($0)" } ?? ""))
    }
    lines.append("timeline:")
    lines += timeline.map { "  \(DrillTimeline.offset($0.atMs - originMs)) \($0.text)" }
    if let unavailabilityMs {
      let what =
        drill == DrillKind.metaserverFailover.rawValue
        ? "metadata writes" : "\(topic)-\(partition) writes"
      lines.append("unavailability: \(DrillTimeline.seconds(unavailabilityMs)) (\(what))")
    } else {
      lines.append("unavailability: not measured (no successful write after the fault)")
    }
    lines += workload.textLines(originMs: originMs)
    lines += reasons.map { "FAIL: \($0)" }
    return lines
  }
}
