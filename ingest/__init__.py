"""Edge processes: the OCPP gateway and the charge point simulator."""
