{
  # nvmq native addon. One target, one .node file; each native feature is
  # plain C++ in its own file and registers its exports from native/binding.cc.
  # io_uring (native/ring.cc) is compiled in when liburing is usable here
  # (native/has-liburing.mjs); otherwise the ring reports ENOSYS and the
  # engine stays on its portable path.
  'variables': {
    'nvmq_liburing%': '<!(node native/has-liburing.mjs)',
  },
  'targets': [
    {
      'target_name': 'nvmq_native',
      'sources': [
        'native/binding.cc',
        'native/fallocate.cc',
        'native/ring.cc',
        'native/vfio.cc',
      ],
      'conditions': [
        ['nvmq_liburing==1', {
          'defines': [ 'NVMQ_HAVE_LIBURING=1' ],
          'libraries': [ '-luring' ],
        }],
      ],
      # node-addon-api's 'node_addon_api' target: adds its include dir,
      # defines NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS and -fno-exceptions.
      'dependencies': [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api",
      ],
      'defines': [
        'NAPI_VERSION=8',
        '_FILE_OFFSET_BITS=64',
        # A worker being terminated cannot take an exception: without this an error thrown from
        # the addon while its thread stops aborts the whole process (napi_throw fails, fatal).
        'NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS',
      ],
      # 'cflags' applies to C and C++ alike.
      'cflags': [ '-Wall', '-Wextra', '-fvisibility=hidden' ],
      'xcode_settings': {
        'GCC_SYMBOLS_PRIVATE_EXTERN': 'YES',
        'OTHER_CFLAGS': [ '-Wall', '-Wextra' ],
      },
    },
  ],
}
