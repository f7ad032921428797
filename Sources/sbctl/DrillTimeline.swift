import Foundation
import NIOConcurrencyHelpers

/// A drill's timeline: what was done and what was observed, each at the Unix millisecond it
/// happened (observations at the time they were seen, acknowledgements at their ack time).
/// Every event is also printed to stderr as it is recorded, so a long drill shows progress.
final class DrillTimeline: Sendable {
  struct Event: Sendable {
    var atMs: Int64
    var text: String
  }

  /// Time zero of the printed `+1.234s` offsets (the drill's start).
  let originMs: Int64
  private let events = NIOLockedValueBox<[Event]>([])

  init(originMs: Int64) {
    self.originMs = originMs
  }

  /// Records `text` at `atMs` (default now); returns that time.
  @discardableResult
  func record(_ text: String, atMs: Int64? = nil) -> Int64 {
    let time = atMs ?? unixNowMs()
    events.withLockedValue { $0.append(Event(atMs: time, text: text)) }
    writeStandardError("\(Self.offset(time - originMs)) \(text)")
    return time
  }

  /// Every event in time order (equal times in recording order).
  var sorted: [Event] {
    events.withLockedValue { $0 }.enumerated().sorted {
      ($0.element.atMs, $0.offset) < ($1.element.atMs, $1.offset)
    }.map(\.element)
  }

  /// `+1.234s` (or `-0.120s`).
  static func offset(_ milliseconds: Int64) -> String {
    (milliseconds < 0 ? "-" : "+") + seconds(abs(milliseconds))
  }

  /// `1.234s`.
  static func seconds(_ milliseconds: Int64) -> String {
    let whole = milliseconds / 1_000
    let fraction = String(abs(milliseconds % 1_000))
    return "\(whole)." + String(repeating: "0", count: 3 - fraction.count) + fraction + "s"
  }
}
