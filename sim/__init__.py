"""unimarl.sim"""
