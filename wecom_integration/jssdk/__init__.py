"""Pages inside the WeCom client: the JS-SDK's ``wx.config`` and ``wx.agentConfig`` parameters for this
site's pages, signed with the tenant's cached tickets."""
