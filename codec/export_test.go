package codec

// Compact exposes compact to the differential fuzz test.
var Compact = compact
