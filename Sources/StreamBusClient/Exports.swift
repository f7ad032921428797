// Types that appear in this library's public API, so users need only `import StreamBusClient`.
@_exported import struct StreamBusProtocol.ErrorCode
@_exported import struct StreamBusTransport.HostPort
