//! Exports kryoptic's PKCS#11 entry points from a cdylib, so the tests can load kryoptic as an
//! ordinary PKCS#11 module (`libbyokd_kryoptic_module.so`). The functions forward to
//! `kryoptic_lib::fns::general`; nothing else lives here.

use kryoptic_lib::fns::general::{fn_get_function_list, fn_get_interface, fn_get_interface_list};
use kryoptic_lib::pkcs11::{
    CK_FLAGS, CK_FUNCTION_LIST_PTR_PTR, CK_INTERFACE_PTR, CK_INTERFACE_PTR_PTR, CK_RV, CK_ULONG_PTR, CK_UTF8CHAR_PTR,
    CK_VERSION_PTR,
};

/// PKCS#11 `C_GetFunctionList`.
#[unsafe(no_mangle)]
pub extern "C" fn C_GetFunctionList(fnlist: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    fn_get_function_list(fnlist)
}

/// PKCS#11 3.x `C_GetInterfaceList`.
#[unsafe(no_mangle)]
pub extern "C" fn C_GetInterfaceList(list: CK_INTERFACE_PTR, count: CK_ULONG_PTR) -> CK_RV {
    fn_get_interface_list(list, count)
}

/// PKCS#11 3.x `C_GetInterface`.
#[unsafe(no_mangle)]
pub extern "C" fn C_GetInterface(
    name: CK_UTF8CHAR_PTR,
    version: CK_VERSION_PTR,
    interface: CK_INTERFACE_PTR_PTR,
    flags: CK_FLAGS,
) -> CK_RV {
    fn_get_interface(name, version, interface, flags)
}
