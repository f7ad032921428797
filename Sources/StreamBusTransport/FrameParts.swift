import Glibc
import NIOConcurrencyHelpers
import NIOCore

/// A byte range of a file sent as part of a reply frame without copying it through user
/// space (`sendfile(2)`).
///
/// Owns its descriptor and closes it exactly once: after the write of the range completed
/// or failed, or when the reply is dropped unwritten (connection closed first).
public final class FrameFileRegion: Sendable {
  public let position: Int64
  public let byteCount: Int
  private let descriptor: NIOLockedValueBox<Int32?>

  /// Takes ownership of `descriptor`.
  public init(descriptor: Int32, position: Int64, byteCount: Int) {
    precondition(position >= 0 && byteCount >= 0, "file region range must not be negative")
    self.descriptor = NIOLockedValueBox(descriptor)
    self.position = position
    self.byteCount = byteCount
  }

  /// Hands the descriptor over to the caller, who must close it; nil once taken.
  func takeDescriptor() -> Int32? {
    descriptor.withLockedValue { descriptor in
      defer { descriptor = nil }
      return descriptor
    }
  }

  deinit {
    if let descriptor = takeDescriptor() {
      _ = Glibc.close(descriptor)
    }
  }
}

/// One piece of a reply payload; the pieces of a reply are written back to back.
public enum FramePart: Sendable {
  case bytes([UInt8])
  case file(FrameFileRegion)

  public var byteCount: Int {
    switch self {
    case .bytes(let bytes): bytes.count
    case .file(let region): region.byteCount
    }
  }
}

/// Why a reply made of parts could not be written.
struct FramePartsError: Error, CustomStringConvertible {
  let description: String
}

/// The parts of one reply as channel writes: the length prefix and byte parts coalesced
/// into buffers, file parts as `FileRegion`s whose handles the caller closes after the
/// write. Checks that every file still holds its whole range, so a file truncated after
/// the read fails the reply instead of sending a frame shorter than its length prefix.
/// On a throw, every descriptor of the reply is closed.
func frameWrites(
  parts: [FramePart], allocator: ByteBufferAllocator
) throws -> (writes: [IOData], handles: [NIOFileHandle]) {
  var handles: [NIOFileHandle] = []
  var writes: [IOData] = []
  do {
    let payloadBytes = parts.reduce(0) { $0 + $1.byteCount }
    guard payloadBytes <= Int(Int32.max) else {
      throw FramePartsError(description: "reply of \(payloadBytes) bytes exceeds a frame")
    }
    var pending = allocator.buffer(capacity: FrameDecoder.lengthPrefixBytes + 256)
    pending.writeInteger(UInt32(payloadBytes))
    for part in parts {
      switch part {
      case .bytes(let bytes):
        pending.writeBytes(bytes)
      case .file(let region):
        guard let descriptor = region.takeDescriptor() else {
          throw FramePartsError(description: "file region of a reply was already written")
        }
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: descriptor)
        handles.append(handle)
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
          throw FramePartsError(description: "fstat of a reply file failed: errno \(errno)")
        }
        let end = region.position + Int64(region.byteCount)
        guard Int64(status.st_size) >= end else {
          throw FramePartsError(
            description:
              "reply file shrank to \(status.st_size) bytes, the reply needs bytes up to \(end)")
        }
        guard region.byteCount > 0 else { continue }
        if pending.readableBytes > 0 {
          writes.append(.byteBuffer(pending))
          pending = allocator.buffer(capacity: 256)
        }
        writes.append(
          .fileRegion(
            FileRegion(
              fileHandle: handle, readerIndex: Int(region.position), endIndex: Int(end))))
      }
    }
    if pending.readableBytes > 0 {
      writes.append(.byteBuffer(pending))
    }
    return (writes, handles)
  } catch {
    for handle in handles {
      try? handle.close()
    }
    for case .file(let region) in parts {
      if let descriptor = region.takeDescriptor() {
        _ = Glibc.close(descriptor)
      }
    }
    throw error
  }
}
