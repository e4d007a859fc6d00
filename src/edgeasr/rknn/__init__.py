"""Rockchip RK3588 through rknn-toolkit2: dataset lists, compile, reports, the simulator."""
